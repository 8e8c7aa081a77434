"""gunicorn settings for tests/test_load.py.

Each worker writes its cache and download counters to
``$LOAD_STATS_DIR/<pid>.json`` when it exits, since the counters live in
the worker's memory and the test cannot read them otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    directory = os.environ.get("LOAD_STATS_DIR")
    app = getattr(worker, "wsgi", None)
    if not directory or app is None or "trigger_outputs" not in app.extensions:
        return

    counts = app.extensions["trigger_outputs"].cache.snapshot()
    path = Path(directory) / f"{os.getpid()}.json"
    path.write_text(json.dumps(counts), "utf-8")
