"""What a node process leaves out of its imports, so an idle node stays small (issue 8).

pydicom imports `requests` (and with it urllib3, charset_normalizer, idna, certifi: about 5 MB of
RSS and 0.1 s of start-up in every node process) for one purpose only: downloading its example
data files, with urllib as its own fallback (`pydicom.data.download`, HAVE_REQUESTS). No node
downloads them. A node process therefore marks `requests` absent before pydicom loads.

Only a node's `__main__` calls this, as its first statement, never a library module: a test or
CLI process that imports node modules in-process keeps `requests` (the docker SDK needs it).
numpy, which pydicom also imports eagerly, stays: the modalities draw their images with it and
pydicom decides once, at import, whether it may use it.
"""

from __future__ import annotations

import sys

NOT_NEEDED = ("requests",)


def leave_out_unused() -> None:
    """Make `import requests` fail in this process (unless something already imported it)."""
    for name in NOT_NEEDED:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # the import system's "absent"
