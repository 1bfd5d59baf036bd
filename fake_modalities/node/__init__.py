"""The fake modality node: a CT/MR/CR/DX/US console as a technologist uses it.

`python -m fake_modalities.node --config FILE` runs it. It queries the worklist (C-FIND MWL),
reports MPPS (N-CREATE/N-SET), generates images with `fake_modalities.images`, sends them from a
durable queue (C-STORE) and asks the PACS for Storage Commitment (N-ACTION / N-EVENT-REPORT).
It imports only `simlab.common` and `fake_modalities.images`: it meets the PACS and RIS on DICOM.
"""
