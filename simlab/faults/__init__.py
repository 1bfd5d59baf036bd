"""Faults: the failures a PACS administrator meets, injected the way they really happen.

A fault is a small class (`simlab.faults.base.Fault`) with `inject`, `revert` and the text of its
symptom and root cause. It acts on the lab only through node configs, admin APIs, data, queues,
processes or the lab's network proxy, never by faking a symptom. One module per family lives in
`simlab.faults.families`; `simlab.faults.catalog` finds them all.
"""
