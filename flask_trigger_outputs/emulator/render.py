"""The run JSON that ``GET /api/v3/runs/{runId}`` returns.

The shape follows ``RetrieveRunResponse`` of @trigger.dev/core 4.8.3, the
schema the official SDK validates every response with: dates are ISO-8601
strings, costs and durations numbers, ``tags`` a sorted list of strings,
``relatedRuns`` an object, and optional fields are left out rather than set
to null.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .packets import STORE, StoredPacket, render_as_json
from .runs import RunRecord, status_flags


def iso_time(seconds: float) -> str:
    """Format Unix seconds as ISO-8601 UTC with milliseconds, like ``Date.toISOString``."""
    millis = round(seconds * 1000)
    whole, fraction = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{fraction:03d}Z"


def render_run(
    record: RunRecord,
    *,
    presign: Callable[[str], str],
    sign_urls: bool = True,
) -> dict[str, Any]:
    """Render a run as the Trigger.dev API returns it.

    :param presign: builds a presigned GET URL for an object key.
    :param sign_urls: False leaves offloaded packets without a URL, as
        Trigger.dev does when signing fails.
    :raises ValueError: an inline packet's data is not valid for its type.
    """
    body: dict[str, Any] = {
        "id": record.id,
        "status": record.status,
        "taskIdentifier": record.task_identifier,
        **status_flags(record.status),
        "isTest": record.is_test,
        "createdAt": iso_time(record.created_at),
        "updatedAt": iso_time(record.updated_at),
        "tags": sorted(record.tags),
        "costInCents": 0,
        "baseCostInCents": 0,
        "durationMs": record.duration_ms,
        "depth": 0,
        "triggerFunction": "trigger",
    }
    if record.idempotency_key is not None:
        body["idempotencyKey"] = record.idempotency_key
    if record.started_at is not None:
        body["startedAt"] = iso_time(record.started_at)
    if record.finished_at is not None:
        body["finishedAt"] = iso_time(record.finished_at)
    if record.ttl is not None:
        body["ttl"] = record.ttl
    if record.metadata is not None:
        body["metadata"] = record.metadata

    _add_packet(body, "payload", record.payload, presign, sign_urls)
    if record.status == "COMPLETED" and record.output is not None:
        _add_packet(body, "output", record.output, presign, sign_urls)

    if record.error is not None:
        body["error"] = record.error
    body["relatedRuns"] = {"children": []}
    body["attemptCount"] = record.attempt_count
    body["attempts"] = []
    return body


def _add_packet(
    body: dict[str, Any],
    name: str,
    packet: StoredPacket,
    presign: Callable[[str], str],
    sign_urls: bool,
) -> None:
    if packet.data_type == STORE and isinstance(packet.data, str):
        if sign_urls:
            body[f"{name}PresignedUrl"] = presign(packet.data)
        return

    present, value = render_as_json(packet)
    if present:
        body[name] = value
