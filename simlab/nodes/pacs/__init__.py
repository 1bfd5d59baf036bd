"""The PACS node: Image Manager / Image Archive of IHE Radiology Scheduled Workflow.

Modules, one concern each:
    node                wires the services together and owns the live config
    archive             durable object store (temp file, fsync, rename), quota, ENOSPC handling
    index               SQLite patient/study/series/instance index and the HL7-fed patient records
    query               PS3.4 C.2.2.2 attribute matching over the index
    dicom_service       the pynetdicom AE: contexts from config, start/stop/apply_config, handlers
    association_policy  AE title checks, association limit, socket timeouts, association log lines
    storage_scp         Verification (C-ECHO) and Storage (C-STORE into the archive)
    qr_scp              Q/R C-FIND/C-MOVE/C-GET, move-destination probe, unreachable destinations
    commitment_scp      Storage Commitment Push Model: N-ACTION in, N-EVENT-REPORT out
    scp_common          uncompressed transfer syntaxes, status data sets, SOP class names
    hl7_service         the MLLP listener: validate, dispatch, ACK (hl7apy)
    hl7_handlers        ADT A01/A04/A08/A40 and ORM O01: what each message changes
    hl7_store           the HL7 registry (patients, orders, message log) in hl7.sqlite
    admin_routes        the admin API (vendor console)
"""
