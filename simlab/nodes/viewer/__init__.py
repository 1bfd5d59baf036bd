"""The viewer node: a reading workstation (IHE Radiology Image Display).

Modules, one concern each:
    node          wires the services together and owns the live config
    store         durable object files (temp file, fsync, rename) and the SQLite index
    storage_scp   the DICOM listener: Verification and Storage SCP (the PACS's C-MOVE destination)
    retrieve      Q/R SCU: C-FIND, then C-MOVE to itself or C-GET, with the peer's exact outcome
    admin_routes  the admin API: open a study, the reading list, config, AE table, log
"""
