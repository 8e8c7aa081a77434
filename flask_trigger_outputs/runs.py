"""Run ids and the run object returned by the Trigger.dev API.

Everything here is a pure function over values already received: no I/O.
The decisions the rest of the package makes about a run (is it finished,
did it succeed, is its output inline or offloaded) live here so they can be
tested without a server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidRunIdError

#: Maximum length of a run id, prefix included. Trigger.dev's ids are
#: ``run_`` followed by a 25-character cuid; the bound leaves room for
#: longer ids while keeping user input short.
MAX_RUN_ID_LENGTH = 64

#: A run id: ``run_`` followed by lowercase ASCII letters and digits.
RUN_ID_PATTERN = re.compile(r"run_[a-z0-9]+")

# Maximum length of the part of a rejected value quoted in an error message.
_QUOTED_VALUE_LENGTH = 40

# Statuses that end a run, used only when a response lacks the booleans.
_SUCCESS_STATUSES = frozenset({"COMPLETED"})
_CANCELLED_STATUSES = frozenset({"CANCELED"})
_FAILED_STATUSES = frozenset(
    {"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT", "INTERRUPTED"}
)
_QUEUED_STATUSES = frozenset({"PENDING_VERSION", "QUEUED", "DELAYED", "WAITING_FOR_DEPLOY"})
_EXECUTING_STATUSES = frozenset({"DEQUEUED", "EXECUTING", "REATTEMPTING"})
_WAITING_STATUSES = frozenset({"WAITING", "FROZEN"})


def _quote_value(value: str) -> str:
    """Quote a rejected value for a message, shortened so that a long or
    hostile input cannot flood a log line."""
    if len(value) > _QUOTED_VALUE_LENGTH:
        return repr(value[:_QUOTED_VALUE_LENGTH]) + "..."
    return repr(value)


def validate_run_id(run_id: object) -> str:
    """Check that ``run_id`` is a Trigger.dev run id and return it.

    Called before any request is built, so user input can never change the
    API path or reach Trigger.dev unchecked.

    :param run_id: the value to check, usually taken from a request.
    :raises InvalidRunIdError: if ``run_id`` is not a string of the form
        ``run_`` followed by lowercase letters and digits, at most
        :data:`MAX_RUN_ID_LENGTH` characters long.
    """
    if not isinstance(run_id, str):
        raise InvalidRunIdError(f"Invalid run id: expected a string, got {type(run_id).__name__}.")

    if len(run_id) > MAX_RUN_ID_LENGTH or RUN_ID_PATTERN.fullmatch(run_id) is None:
        raise InvalidRunIdError(
            f"Invalid run id {_quote_value(run_id)}: expected 'run_' followed by"
            f" lowercase letters and digits, at most {MAX_RUN_ID_LENGTH} characters."
        )

    return run_id


@dataclass(frozen=True)
class RunError:
    """The error a failed run reports: the ``name`` and ``message`` of the
    exception that ended it, as the API sends them."""

    name: str | None
    message: str | None

    @classmethod
    def from_api(cls, data: object) -> RunError | None:
        """Build a :class:`RunError` from the ``error`` field of a run, or
        return ``None`` when the field is absent or not an object."""
        if not isinstance(data, Mapping):
            return None

        name = data.get("name")
        message = data.get("message")
        return cls(
            name=name if isinstance(name, str) else None,
            message=message if isinstance(message, str) else None,
        )


@dataclass(frozen=True)
class PacketSource:
    """The location of a run's output or payload: inline in the run, behind
    a presigned URL, or nowhere.

    ``value`` is the inline data in its JSON form (the API renders it with
    Trigger.dev's ``parsePacketAsJson``) and is only meaningful when
    ``inline`` is true.
    """

    inline: bool
    value: Any = None
    presigned_url: str | None = None

    @property
    def offloaded(self) -> bool:
        """Whether the data must be downloaded from ``presigned_url``."""
        return not self.inline and self.presigned_url is not None

    @property
    def available(self) -> bool:
        """Whether the run carries the data in any form."""
        return self.inline or self.presigned_url is not None


def find_packet(raw: Mapping[str, Any], kind: Literal["output", "payload"]) -> PacketSource:
    """Find a run's output or payload in a retrieve-run response.

    An inline value wins over a presigned URL. A key present with the value
    ``null`` is an inline ``None``: the API omits the key entirely when it
    has no inline data.

    :param raw: the JSON object returned by ``GET /api/v3/runs/{runId}``.
    :param kind: ``"output"`` or ``"payload"``.
    """
    if kind in raw:
        return PacketSource(inline=True, value=raw[kind])

    url = raw.get(f"{kind}PresignedUrl")
    if isinstance(url, str) and url:
        return PacketSource(inline=False, presigned_url=url)

    return PacketSource(inline=False)


def _flag(raw: Mapping[str, Any], key: str, statuses: frozenset[str], status: str) -> bool:
    """Read a status boolean, falling back to the status name when an older
    or trimmed response leaves the boolean out."""
    value = raw.get(key)
    if isinstance(value, bool):
        return value
    return status in statuses


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Run:
    """A run as returned by ``GET /api/v3/runs/{runId}``.

    The status booleans are the API's own. Decisions are made from them, not
    from ``status``, so a status name this package does not know (Trigger.dev
    adds them over time) never causes an error. Timestamps are the ISO-8601
    strings the API sent, or ``None``. ``raw`` is the whole response,
    including the output and payload fields.
    """

    id: str
    status: str
    task_identifier: str
    is_queued: bool
    is_executing: bool
    is_waiting: bool
    is_completed: bool
    is_success: bool
    is_failed: bool
    is_cancelled: bool
    metadata: dict[str, Any] | None
    error: RunError | None
    tags: tuple[str, ...]
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    finished_at: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_finished(self) -> bool:
        """Whether the run has ended, with success or not.

        The API's ``isCompleted`` covers success and failure but not
        cancellation, so all four booleans are consulted. A run that is
        neither queued, executing nor waiting but reports no final state
        either (an unknown status with every boolean false) counts as not
        finished, so callers keep polling instead of reading a missing
        output."""
        return self.is_completed or self.is_success or self.is_failed or self.is_cancelled

    @property
    def output(self) -> PacketSource:
        """Where this run's output is."""
        return find_packet(self.raw, "output")

    @property
    def payload(self) -> PacketSource:
        """Where this run's payload is."""
        return find_packet(self.raw, "payload")

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Run:
        """Build a :class:`Run` from a retrieve-run response.

        Missing or mistyped optional fields become ``None`` or empty values;
        only ``id`` must be a valid run id.

        :param raw: the decoded JSON object.
        :raises InvalidRunIdError: if the response has no valid ``id``.
        """
        run_id = validate_run_id(raw.get("id"))
        status = raw.get("status")
        status = status if isinstance(status, str) else "UNKNOWN"

        is_success = _flag(raw, "isSuccess", _SUCCESS_STATUSES, status)
        is_cancelled = _flag(raw, "isCancelled", _CANCELLED_STATUSES, status)
        is_failed = _flag(raw, "isFailed", _FAILED_STATUSES, status)

        metadata = raw.get("metadata")
        tags = raw.get("tags")

        return cls(
            id=run_id,
            status=status,
            task_identifier=_optional_str(raw.get("taskIdentifier")) or "",
            is_queued=_flag(raw, "isQueued", _QUEUED_STATUSES, status),
            is_executing=_flag(raw, "isExecuting", _EXECUTING_STATUSES, status),
            is_waiting=_flag(raw, "isWaiting", _WAITING_STATUSES, status),
            is_completed=_flag(raw, "isCompleted", _SUCCESS_STATUSES | _FAILED_STATUSES, status),
            is_success=is_success,
            is_failed=is_failed,
            is_cancelled=is_cancelled,
            metadata=dict(metadata) if isinstance(metadata, Mapping) else None,
            error=RunError.from_api(raw.get("error")),
            tags=tuple(tag for tag in tags if isinstance(tag, str))
            if isinstance(tags, list)
            else (),
            created_at=_optional_str(raw.get("createdAt")),
            updated_at=_optional_str(raw.get("updatedAt")),
            started_at=_optional_str(raw.get("startedAt")),
            finished_at=_optional_str(raw.get("finishedAt")),
            raw=dict(raw),
        )
