"""The PACS node: Image Manager / Image Archive of IHE Radiology Scheduled Workflow.

Modules, one concern each:
    node          wires the services together and owns the live config
    archive       durable object store (temp file, fsync, rename) with quota and ENOSPC handling
    index         SQLite patient/study/series/instance index and the HL7-fed patient records
    query         PS3.4 C.2.2.2 attribute matching over the index
    dicom_service Verification, Storage, Q/R FIND/MOVE/GET, Storage Commitment (pynetdicom)
    hl7_service   the MLLP listener: validate, dispatch, ACK (hl7apy)
    hl7_handlers  ADT A01/A04/A08/A40 and ORM O01: what each message changes
    hl7_store     the HL7 registry (patients, orders, message log) in hl7.sqlite
    admin_routes  the admin API (vendor console)
"""
