"""The RIS node: Order Filler, ADT and Department System Scheduler of IHE Radiology SWF.

Modules, one concern each:
    node           wires the services together and owns the live config
    store          SQLite (WAL): patients, visits, orders, MPPS, inbound log, outbound queue
    scheduling     registering/updating/merging patients, placing/cancelling orders
    hl7_builder    the outbound ADT^A04/A08/A40 and ORM^O01 messages
    outbound       the persistent outbound queue and its sender threads
    hl7_service    the inbound MLLP listener (ADT and ORM from a HIS), ACKs
    dicom_service  Modality Worklist SCP and MPPS SCP (pynetdicom)
    admin_routes   the admin API (vendor console)
"""
