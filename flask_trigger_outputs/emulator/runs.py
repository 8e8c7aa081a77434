"""Runs, the tasks that execute them, and the worker threads they run on."""

from __future__ import annotations

import dataclasses
import secrets
import string
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .packets import (
    STORE,
    StoredPacket,
    decode_typed,
    encode_value,
    packet_bytes,
    packet_extension,
    packet_size,
)
from .store import ObjectStore

#: Run statuses of Trigger.dev v4 (``RunStatus`` in @trigger.dev/core 4.8.3).
RUN_STATUSES = frozenset(
    {
        "PENDING_VERSION",
        "QUEUED",
        "DEQUEUED",
        "EXECUTING",
        "WAITING",
        "COMPLETED",
        "CANCELED",
        "FAILED",
        "CRASHED",
        "SYSTEM_FAILURE",
        "DELAYED",
        "EXPIRED",
        "TIMED_OUT",
    }
)

# Status groups of @trigger.dev/core 4.8.3 (booleanHelpersFromRunStatus).
# A canceled run counts as neither completed nor failed there.
_QUEUED = frozenset({"PENDING_VERSION", "QUEUED", "PENDING", "DELAYED"})
_WAITING = frozenset({"WAITING"})
_EXECUTING = frozenset({"DEQUEUED", "EXECUTING"})
_FAILED = frozenset({"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"})
_FINAL = frozenset({"COMPLETED", "CANCELED"}) | _FAILED

_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits

#: The largest output Trigger.dev stores for a task (10 MB).
DEFAULT_MAX_OUTPUT_SIZE = 10 * 1024 * 1024

Task = Callable[[Any, "TaskContext"], Any]


def status_flags(status: str) -> dict[str, bool]:
    """Return the ``is*`` booleans of the run response for ``status``.

    An unknown status gets every boolean False.
    """
    return {
        "isQueued": status in _QUEUED,
        "isExecuting": status in _EXECUTING,
        "isWaiting": status in _WAITING,
        "isCompleted": status == "COMPLETED" or status in _FAILED,
        "isSuccess": status == "COMPLETED",
        "isFailed": status in _FAILED,
        "isCancelled": status == "CANCELED",
    }


def is_final(status: str) -> bool:
    """Return whether a run in ``status`` will not change any more."""
    return status in _FINAL


def new_run_id() -> str:
    """Return a fresh run id: ``run_`` and 25 lowercase letters and digits."""
    return "run_" + "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(25))


@dataclass
class RunRecord:
    """The emulator's state of one run.

    Times are Unix seconds. ``payload`` and ``output`` are stored packets; an
    offloaded one has data type ``application/store`` and the object key as
    data. Records handed out by :class:`RunRegistry` are copies.
    """

    id: str
    task_identifier: str
    status: str
    created_at: float
    updated_at: float
    payload: StoredPacket = field(default_factory=lambda: StoredPacket(None))
    output: StoredPacket | None = None
    error: dict[str, str] | None = None
    metadata: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    ttl: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempt_count: int = 0
    duration_ms: int = 0
    is_test: bool = False


class TaskContext:
    """The view a running task has of its own run, for reading and updating metadata.

    :param registry: the registry that owns the run.
    :param run_id: the run being executed.
    :param task_id: the task identifier the run was triggered for.
    """

    def __init__(self, registry: RunRegistry, run_id: str, task_id: str) -> None:
        self._registry = registry
        #: Id of the run being executed.
        self.run_id = run_id
        #: Identifier of the task.
        self.task_id = task_id

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the run's current metadata (empty when none was set)."""
        return dict(self._registry.get(self.run_id).metadata or {})

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Replace the run's metadata; pollers see it at once."""
        self._registry.update(self.run_id, metadata=dict(metadata))

    def update_metadata(self, **values: Any) -> None:
        """Merge ``values`` into the run's metadata; pollers see it at once."""
        self._registry.merge_metadata(self.run_id, values)


class RunRegistry:
    """The emulator's runs and the worker threads that execute them.

    Every method is thread-safe.

    :param store: object store that receives offloaded packets.
    :param offload_threshold: packets of at least this many bytes are
        offloaded to the store; smaller ones stay inline.
    :param clock: returns the current Unix time in seconds.
    :param max_workers: number of runs that execute at the same time; later
        runs stay QUEUED until a worker is free.
    :param max_output_size: a larger output fails the run, as Trigger.dev does.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        offload_threshold: int,
        clock: Callable[[], float] = time.time,
        max_workers: int = 4,
        max_output_size: int = DEFAULT_MAX_OUTPUT_SIZE,
    ) -> None:
        self.store = store
        self.offload_threshold = offload_threshold
        self.max_output_size = max_output_size
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._runs: dict[str, RunRecord] = {}
        self._tasks: dict[str, Task] = {}
        self._idempotency: dict[tuple[str, str], str] = {}
        self._request_keys: dict[str, str] = {}
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="trigger-emulator-run"
        )

    # -- tasks -----------------------------------------------------------

    def register_task(self, task_id: str, fn: Task) -> None:
        """Register ``fn`` as the task ``task_id``, replacing any previous one."""
        with self._lock:
            self._tasks[task_id] = fn

    def has_task(self, task_id: str) -> bool:
        """Return whether a task ``task_id`` is registered."""
        with self._lock:
            return task_id in self._tasks

    # -- runs ------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """Return a copy of the run ``run_id``.

        :raises KeyError: no such run.
        """
        with self._lock:
            return dataclasses.replace(self._runs[run_id])

    def find(self, run_id: str) -> RunRecord | None:
        """Return a copy of the run ``run_id``, or None."""
        with self._lock:
            record = self._runs.get(run_id)
            return dataclasses.replace(record) if record else None

    def all_runs(self) -> list[RunRecord]:
        """Return copies of every run, oldest first."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._runs.values()]

    def update(self, run_id: str, **changes: Any) -> None:
        """Change fields of the run ``run_id`` and touch its ``updated_at``."""
        with self._lock:
            record = self._runs[run_id]
            for name, value in changes.items():
                setattr(record, name, value)
            record.updated_at = self._clock()
            self._changed.notify_all()

    def merge_metadata(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the metadata of the run ``run_id``."""
        with self._lock:
            record = self._runs[run_id]
            record.metadata = {**(record.metadata or {}), **values}
            record.updated_at = self._clock()
            self._changed.notify_all()

    def add(self, record: RunRecord) -> None:
        """Add a run as it is, without executing it."""
        with self._lock:
            self._runs[record.id] = record
            self._changed.notify_all()

    def trigger(
        self,
        task_id: str,
        payload: StoredPacket,
        *,
        idempotency_key: str | None = None,
        request_key: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        ttl: str | None = None,
    ) -> tuple[str, bool]:
        """Create a QUEUED run of ``task_id`` and queue it for a worker.

        A repeated ``idempotency_key`` for the same task, or a repeated
        ``request_key`` (the ``x-trigger-request-idempotency-key`` header),
        returns the first run instead of creating another.

        :returns: the run id, and whether an idempotency key matched an
            earlier run (the ``isCached`` of the response).
        :raises KeyError: no task ``task_id`` is registered.
        """
        with self._lock:
            if task_id not in self._tasks:
                raise KeyError(task_id)
            if request_key is not None and request_key in self._request_keys:
                # Trigger.dev returns isCached false for a repeated request.
                return self._request_keys[request_key], False
            if idempotency_key is not None and (task_id, idempotency_key) in self._idempotency:
                run_id = self._idempotency[task_id, idempotency_key]
                if request_key is not None:
                    self._request_keys[request_key] = run_id
                return run_id, True

            now = self._clock()
            run_id = new_run_id()
            record = RunRecord(
                id=run_id,
                task_identifier=task_id,
                status="QUEUED",
                created_at=now,
                updated_at=now,
                payload=self._offload(run_id, payload, "payload"),
                metadata=metadata,
                tags=sorted(tags or []),
                idempotency_key=idempotency_key,
                ttl=ttl,
            )
            self._runs[record.id] = record
            if idempotency_key is not None:
                self._idempotency[task_id, idempotency_key] = record.id
            if request_key is not None:
                self._request_keys[request_key] = record.id

        self._executor.submit(self._execute, record.id)
        return record.id, False

    def wait(self, run_id: str, timeout: float) -> RunRecord:
        """Block until the run ``run_id`` reaches a final status.

        :raises KeyError: no such run.
        :raises TimeoutError: the run is still going after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not is_final(self._runs[run_id].status):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = self._runs[run_id].status
                    raise TimeoutError(f"Run {run_id!r} is still {status} after {timeout} seconds.")
                self._changed.wait(remaining)
            return dataclasses.replace(self._runs[run_id])

    def shutdown(self) -> None:
        """Stop accepting runs and wait for the running ones to finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- packets ---------------------------------------------------------

    def store_packet(
        self, run_id: str, packet: StoredPacket, name: str, *, offload: bool | None = None
    ) -> StoredPacket:
        """Return ``packet`` as a run keeps it: inline, or offloaded to the store.

        :param name: ``"output"`` or ``"payload"``; names the object key.
        :param offload: force the choice; None offloads a packet whose data
            is at least ``offload_threshold`` bytes.
        """
        return self._offload(run_id, packet, name, force=offload)

    def resolve_packet(self, packet: StoredPacket) -> StoredPacket:
        """Return the packet an ``application/store`` pointer refers to.

        :raises KeyError: the object does not exist.
        """
        if packet.data_type != STORE or packet.data is None:
            return packet
        key = packet.data if isinstance(packet.data, str) else packet.data.decode()
        stored = self.store.get(key)
        if stored is None:
            raise KeyError(key)
        return StoredPacket(stored.data.decode("utf-8", errors="replace"), stored.content_type)

    def _offload(
        self, run_id: str, packet: StoredPacket, name: str, *, force: bool | None = None
    ) -> StoredPacket:
        if packet.data is None or packet.data_type == STORE:
            return packet
        offload = packet_size(packet) >= self.offload_threshold if force is None else force
        if not offload:
            return packet
        key = f"{run_id}/{name}.{packet_extension(packet.data_type)}"
        self.store.put(key, packet_bytes(packet.data), packet.data_type)
        return StoredPacket(key, STORE)

    # -- execution -------------------------------------------------------

    def _execute(self, run_id: str) -> None:
        with self._lock:
            record = self._runs[run_id]
            fn = self._tasks[record.task_identifier]
            payload_packet = record.payload
        started = self._clock()
        self.update(run_id, status="EXECUTING", started_at=started, attempt_count=1)

        context = TaskContext(self, run_id, record.task_identifier)
        try:
            payload = decode_typed(self.resolve_packet(payload_packet))
            result = fn(payload, context)
            packet = encode_value(result)
            size = packet_size(packet)
            if size > self.max_output_size:
                limit = self.max_output_size
                raise OutputTooLarge(
                    f"Task output is {size} bytes, over the limit of {limit} bytes."
                )
            output = self._offload(run_id, packet, "output")
        except Exception as exc:
            finished = self._clock()
            error = {
                "name": type(exc).__name__,
                "message": str(exc),
                "stackTrace": "".join(traceback.format_exception(exc)),
            }
            self.update(
                run_id,
                status="FAILED",
                error=error,
                finished_at=finished,
                duration_ms=int((finished - started) * 1000),
            )
            return

        finished = self._clock()
        self.update(
            run_id,
            status="COMPLETED",
            output=output,
            finished_at=finished,
            duration_ms=int((finished - started) * 1000),
        )


class OutputTooLarge(Exception):
    """A task returned an output larger than the emulator stores."""
