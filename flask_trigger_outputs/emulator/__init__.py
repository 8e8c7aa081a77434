"""A local emulator of the Trigger.dev API and its object storage.

It serves the parts of the API that this package uses (retrieve a run,
trigger a task, presign packet uploads and downloads) plus an object store
with presigned URLs, runs registered Python callables as tasks on worker
threads, and lets tests inject failures through :attr:`Emulator.faults`.
Use it from code, from pytest (the ``trigger_emulator`` fixture), or from
the command line::

    python -m flask_trigger_outputs.emulator --port 8787 --secret-key tr_dev_local
"""

from __future__ import annotations

from .app import NO_OUTPUT, Emulator
from .faults import Faults
from .packets import StoredPacket
from .runs import RunRecord, TaskContext
from .server import EmulatorServer
from .stats import RecordedRequest, Stats

__all__ = [
    "NO_OUTPUT",
    "Emulator",
    "EmulatorServer",
    "Faults",
    "RecordedRequest",
    "RunRecord",
    "Stats",
    "StoredPacket",
    "TaskContext",
]
