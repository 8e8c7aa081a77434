from __future__ import annotations

from typing import Any

import pytest

from flask_trigger_outputs.errors import InvalidRunIdError
from flask_trigger_outputs.runs import (
    MAX_RUN_ID_LENGTH,
    Run,
    RunError,
    find_packet,
    validate_run_id,
)


def run_response(status: str, **fields: Any) -> dict[str, Any]:
    """Build a retrieve-run response the way Trigger.dev shapes it, with the
    booleans derived from the status as the server derives them."""
    failed = status in {"FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"}
    response: dict[str, Any] = {
        "id": "run_cm1abc2def3ghi4jkl5mno6pq",
        "status": status,
        "taskIdentifier": "site-crawl",
        "isQueued": status in {"PENDING_VERSION", "QUEUED", "DELAYED"},
        "isExecuting": status in {"DEQUEUED", "EXECUTING"},
        "isWaiting": status == "WAITING",
        "isCompleted": status == "COMPLETED" or failed,
        "isSuccess": status == "COMPLETED",
        "isFailed": failed,
        "isCancelled": status == "CANCELED",
        "isTest": False,
        "createdAt": "2024-05-01T10:00:00.000Z",
        "updatedAt": "2024-05-01T10:00:05.000Z",
        "tags": ["site:example"],
        "costInCents": 0,
        "attemptCount": 1,
    }
    response.update(fields)
    return response


@pytest.mark.parametrize(
    "run_id",
    ["run_a", "run_cm1abc2def3ghi4jkl5mno6pq", "run_" + "a" * (MAX_RUN_ID_LENGTH - 4)],
)
def test_validate_run_id_accepts(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "run_",
        "run",
        "RUN_abc",
        "run_ABC",
        "run_abc-def",
        "run_abc/../../api/v1",
        "run_abc?x=1",
        "run_abc\n",
        "run_abc ",
        " run_abc",
        "batch_abc",
        "run_\u0430bc",  # CYRILLIC SMALL LETTER A
        "run_" + "a" * (MAX_RUN_ID_LENGTH - 3),
    ],
)
def test_validate_run_id_rejects(run_id: str) -> None:
    with pytest.raises(InvalidRunIdError) as info:
        validate_run_id(run_id)

    assert info.value.message.startswith(f"Invalid run id {run_id[:40]!r}")
    assert "expected 'run_' followed by lowercase letters and digits" in info.value.message
    assert info.value.http_status == 400


def test_validate_run_id_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="Invalid run id"):
        validate_run_id("nope")


def test_validate_run_id_truncates_long_value() -> None:
    value = "x" * 10_000

    with pytest.raises(InvalidRunIdError) as info:
        validate_run_id(value)

    assert info.value.message == (
        f"Invalid run id {'x' * 40!r}...: expected 'run_' followed by lowercase letters"
        f" and digits, at most {MAX_RUN_ID_LENGTH} characters."
    )


@pytest.mark.parametrize("value", [None, 123, b"run_abc", ["run_abc"]])
def test_validate_run_id_rejects_non_string(value: object) -> None:
    with pytest.raises(InvalidRunIdError) as info:
        validate_run_id(value)

    assert info.value.message == (f"Invalid run id: expected a string, got {type(value).__name__}.")


@pytest.mark.parametrize(
    ("status", "finished", "success"),
    [
        ("PENDING_VERSION", False, False),
        ("QUEUED", False, False),
        ("DELAYED", False, False),
        ("DEQUEUED", False, False),
        ("EXECUTING", False, False),
        ("WAITING", False, False),
        ("COMPLETED", True, True),
        ("FAILED", True, False),
        ("CRASHED", True, False),
        ("SYSTEM_FAILURE", True, False),
        ("EXPIRED", True, False),
        ("TIMED_OUT", True, False),
        ("CANCELED", True, False),
    ],
)
def test_run_from_api_status_booleans(status: str, finished: bool, success: bool) -> None:
    run = Run.from_api(run_response(status))

    assert run.status == status
    assert run.is_finished is finished
    assert run.is_success is success


def test_run_from_api_cancelled_is_finished() -> None:
    run = Run.from_api(run_response("CANCELED"))

    assert run.is_cancelled
    assert not run.is_completed
    assert not run.is_failed
    assert run.is_finished


def test_run_from_api_unknown_status_uses_booleans() -> None:
    finished = Run.from_api({**run_response("FAILED"), "status": "SOMETHING_NEW"})
    pending = Run.from_api({**run_response("QUEUED"), "status": "SOMETHING_NEW", "isQueued": False})

    assert finished.status == "SOMETHING_NEW"
    assert finished.is_finished
    assert finished.is_failed
    assert pending.status == "SOMETHING_NEW"
    assert not pending.is_finished


def test_run_from_api_without_booleans() -> None:
    raw = {"id": "run_abc", "status": "COMPLETED", "taskIdentifier": "site-crawl"}
    failed = {"id": "run_abc", "status": "CRASHED"}
    unknown = {"id": "run_abc", "status": "WEIRD"}

    assert Run.from_api(raw).is_success
    assert Run.from_api(raw).is_finished
    assert Run.from_api(failed).is_failed
    assert Run.from_api(failed).is_finished
    assert not Run.from_api(unknown).is_finished


def test_run_from_api_fields() -> None:
    raw = run_response(
        "FAILED",
        metadata={"progress": 0.5},
        error={"name": "TimeoutError", "message": "Page load timed out", "stackTrace": "..."},
        startedAt="2024-05-01T10:00:01.000Z",
        finishedAt="2024-05-01T10:00:04.000Z",
    )

    run = Run.from_api(raw)

    assert run.id == "run_cm1abc2def3ghi4jkl5mno6pq"
    assert run.task_identifier == "site-crawl"
    assert run.metadata == {"progress": 0.5}
    assert run.error == RunError(name="TimeoutError", message="Page load timed out")
    assert run.tags == ("site:example",)
    assert run.created_at == "2024-05-01T10:00:00.000Z"
    assert run.updated_at == "2024-05-01T10:00:05.000Z"
    assert run.started_at == "2024-05-01T10:00:01.000Z"
    assert run.finished_at == "2024-05-01T10:00:04.000Z"
    assert run.raw == raw


def test_run_from_api_tolerates_mistyped_fields() -> None:
    raw = run_response(
        "EXECUTING",
        metadata="not an object",
        error="boom",
        tags="not a list",
        createdAt=12,
        taskIdentifier=None,
    )

    run = Run.from_api(raw)

    assert run.metadata is None
    assert run.error is None
    assert run.tags == ()
    assert run.created_at is None
    assert run.task_identifier == ""


def test_run_from_api_rejects_invalid_id() -> None:
    with pytest.raises(InvalidRunIdError):
        Run.from_api(run_response("COMPLETED", id="../../etc"))


def test_find_packet_inline() -> None:
    source = find_packet({"output": {"pages": 3}}, "output")

    assert source.inline
    assert source.value == {"pages": 3}
    assert not source.offloaded
    assert source.available


def test_find_packet_inline_null() -> None:
    source = find_packet({"output": None}, "output")

    assert source.inline
    assert source.value is None
    assert source.available


def test_find_packet_offloaded() -> None:
    url = "http://127.0.0.1:9/storage/output.json?X-Amz-Signature=abc"

    source = find_packet({"outputPresignedUrl": url}, "output")

    assert not source.inline
    assert source.offloaded
    assert source.presigned_url == url


def test_find_packet_missing() -> None:
    source = find_packet({"payload": {"a": 1}, "outputPresignedUrl": ""}, "output")

    assert not source.available
    assert not source.offloaded


def test_run_payload_and_output_sources() -> None:
    run = Run.from_api(
        run_response("EXECUTING", payloadPresignedUrl="http://127.0.0.1:9/storage/p.json")
    )

    assert run.payload.offloaded
    assert not run.output.available
