"""Tests for reading runs, outputs and payloads, against the emulator."""

from __future__ import annotations

import datetime
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from flask_trigger_outputs._retry import RetryPolicy
from flask_trigger_outputs.cache import OutputCache
from flask_trigger_outputs.client import TriggerClient
from flask_trigger_outputs.emulator import Emulator, EmulatorServer, StoredPacket
from flask_trigger_outputs.errors import (
    InvalidRunIdError,
    OutputTooLargeError,
    OutputUnavailableError,
    RunFailedError,
    RunNotFinishedError,
    RunNotFoundError,
    StorageError,
)
from flask_trigger_outputs.packets import PacketDownloader
from flask_trigger_outputs.reader import RunReader

CREATED_AT = datetime.datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=datetime.timezone.utc)
OUTPUT = {"site": "https://example.com", "pages": 3, "crawledAt": CREATED_AT}
OUTPUT_AS_JSON = {
    "site": "https://example.com",
    "pages": 3,
    "crawledAt": "2024-05-01T12:34:56.789Z",
}


def no_sleep(seconds: float) -> None:
    """Skip retry waits: these tests count attempts, not time."""


def make_reader(server: EmulatorServer, *, max_size: int = 10 * 1024 * 1024) -> RunReader:
    policy = RetryPolicy(max_tries=3, max_time=30.0, sleep=no_sleep)
    client = TriggerClient(server.secret_key, api_url=server.url, retry_policy=policy)
    downloader = PacketDownloader(max_size=max_size, retry_policy=policy)
    return RunReader(client, downloader)


@pytest.fixture
def reader(trigger_emulator: EmulatorServer) -> RunReader:
    return make_reader(trigger_emulator)


def test_get_run_returns_status_without_download(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(
        "site-crawl", output=OUTPUT, offload_output=True, metadata={"progress": 1.0}
    )

    run = reader.get_run(run_id)

    assert run.id == run_id
    assert run.is_success
    assert run.metadata == {"progress": 1.0}
    assert run.output.offloaded
    assert trigger_emulator.emulator.stats.storage_requests() == []


def test_get_run_cached_copy_unchanged_by_caller(trigger_emulator: EmulatorServer) -> None:
    reader = make_reader(trigger_emulator)
    reader.cache = OutputCache()
    run_id = trigger_emulator.emulator.create_run(
        output={"pages": [1]}, metadata={"progress": {"done": 3}}
    )
    first = reader.get_run(run_id)
    assert first.metadata is not None

    first.metadata["progress"]["done"] = 0
    first.raw["output"]["pages"].append(2)
    first.raw["metadata"]["progress"]["done"] = 0
    second = reader.get_run(run_id)

    assert second.metadata == {"progress": {"done": 3}}
    assert second.raw["metadata"] == {"progress": {"done": 3}}
    assert second.raw["output"] == {"pages": [1]}
    assert reader.get_output(run_id) == {"pages": [1]}
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1


def test_get_run_invalid_id(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    with pytest.raises(InvalidRunIdError):
        reader.get_run("../admin")

    assert trigger_emulator.emulator.stats.requests == []


def test_get_run_not_found(reader: RunReader) -> None:
    with pytest.raises(RunNotFoundError):
        reader.get_run("run_missing")


def test_get_output_inline_is_json_form(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=False)

    assert reader.get_output(run_id) == OUTPUT_AS_JSON
    assert reader.get_output(run_id, as_json=True) == OUTPUT_AS_JSON
    assert trigger_emulator.emulator.stats.storage_requests() == []


def test_get_output_offloaded_is_typed(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)

    assert reader.get_output(run_id) == OUTPUT
    assert reader.get_output(run_id, as_json=True) == OUTPUT_AS_JSON


def test_get_output_offloaded_downloads_without_credentials(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)

    reader.get_output(run_id)

    [api_request] = [r for r in trigger_emulator.emulator.stats.requests if r.kind == "api"]
    [storage_request] = trigger_emulator.emulator.stats.storage_requests()
    assert api_request.headers["authorization"] == f"Bearer {trigger_emulator.secret_key}"
    assert "authorization" not in storage_request.headers
    assert "cookie" not in storage_request.headers


def test_get_output_text(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    inline = trigger_emulator.emulator.create_run(output="plain text", offload_output=False)
    offloaded = trigger_emulator.emulator.create_run(output="plain text", offload_output=True)

    assert reader.get_output(inline) == "plain text"
    assert reader.get_output(offloaded) == "plain text"


def test_get_output_null_is_an_output(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=None, offload_output=False)

    assert reader.get_output(run_id) is None


def test_get_output_of_triggered_run(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = reader.client.trigger("echo", {"url": "https://example.com"})
    trigger_emulator.emulator.wait_for_run(run_id)

    assert reader.get_output(run_id) == {"url": "https://example.com"}


@pytest.mark.parametrize("status", ["QUEUED", "EXECUTING", "WAITING", "DELAYED", "BRAND_NEW"])
def test_get_output_while_pending(
    trigger_emulator: EmulatorServer, reader: RunReader, status: str
) -> None:
    run_id = trigger_emulator.emulator.create_run(status=status)

    with pytest.raises(RunNotFinishedError) as info:
        reader.get_output(run_id)

    assert info.value.status == status
    assert info.value.run_id == run_id
    assert info.value.message == (
        f"Run {run_id!r} has not finished yet (status {status}); its output is available"
        " once it completes. Poll again later."
    )


def test_get_output_of_failed_run(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(
        status="FAILED", error={"name": "TimeoutError", "message": "Page load timed out"}
    )

    with pytest.raises(RunFailedError) as info:
        reader.get_output(run_id)

    assert info.value.status == "FAILED"
    assert info.value.error_name == "TimeoutError"
    assert info.value.error_message == "Page load timed out"
    assert info.value.message == (
        f"Run {run_id!r} finished without success (status FAILED), so it has no output."
        " Its error: TimeoutError: Page load timed out"
    )


@pytest.mark.parametrize(
    "status", ["CANCELED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"]
)
def test_get_output_of_unsuccessful_run(
    trigger_emulator: EmulatorServer, reader: RunReader, status: str
) -> None:
    run_id = trigger_emulator.emulator.create_run(status=status)

    with pytest.raises(RunFailedError) as info:
        reader.get_output(run_id)

    assert info.value.status == status
    assert info.value.error_name is None


def test_get_output_of_task_that_raised(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    def crash(payload: Any, context: Any) -> Any:
        raise RuntimeError("disk full")

    trigger_emulator.emulator.register_task("crashes", crash)
    run_id = reader.client.trigger("crashes", {})
    trigger_emulator.emulator.wait_for_run(run_id)

    with pytest.raises(RunFailedError) as info:
        reader.get_output(run_id)

    assert info.value.error_name == "RuntimeError"
    assert info.value.error_message == "disk full"


def test_get_output_completed_without_output(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(status="COMPLETED")

    with pytest.raises(OutputUnavailableError) as info:
        reader.get_output(run_id)

    assert info.value.message == (
        f"Run {run_id!r} completed, but Trigger.dev returned neither its output nor a"
        " presigned URL for it, which happens when the server fails to sign the URL."
        " Try again in a moment."
    )


def test_get_output_when_signing_fails(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    trigger_emulator.emulator.faults.fail_url_signing(times=1)

    with pytest.raises(OutputUnavailableError):
        reader.get_output(run_id)

    # The next retrieval signs the URL again.
    assert reader.get_output(run_id) == OUTPUT


def test_get_output_refreshes_rejected_url(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    trigger_emulator.emulator.faults.bad_signatures(times=1)

    assert reader.get_output(run_id) == OUTPUT
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 2
    assert [r.status for r in trigger_emulator.emulator.stats.storage_requests()] == [403, 200]


def test_load_packet_refreshes_expired_url() -> None:
    now = [1_700_000_000.0]
    emulator = Emulator(url_expiry=300.0, clock=lambda: now[0])

    with EmulatorServer(emulator) as server:
        reader = make_reader(server)
        run_id = emulator.create_run(output=OUTPUT, offload_output=True)
        run = reader.get_run(run_id)
        # The URL in ``run`` expires, so the storage host responds with 403
        # "Request has expired" and the reader requests a fresh one.
        now[0] += 301.0

        loaded = reader.load_packet(run, "output", as_json=False)

        assert loaded.value == OUTPUT
        assert loaded.offloaded
        assert [r.status for r in emulator.stats.storage_requests()] == [403, 200]
        assert emulator.stats.api_calls["retrieve"] == 2


def test_get_output_refreshes_only_once(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    trigger_emulator.emulator.faults.bad_signatures(times=2)

    with pytest.raises(StorageError) as info:
        reader.get_output(run_id)

    assert info.value.status_code == 403
    assert info.value.message == (
        f"The storage host rejected the presigned URL for the output of run {run_id!r}"
        " twice, also right after Trigger.dev signed a fresh one. Check that the clocks of"
        " Trigger.dev and the storage host agree and that the storage credentials of"
        " Trigger.dev are valid."
    )
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 2
    assert len(trigger_emulator.emulator.stats.storage_requests()) == 2


def test_get_output_retries_truncated_download(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    trigger_emulator.emulator.faults.truncate_downloads(times=1, keep_bytes=20)

    assert reader.get_output(run_id) == OUTPUT
    assert len(trigger_emulator.emulator.stats.storage_requests()) == 2


def test_get_output_storage_failure(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    trigger_emulator.emulator.faults.fail_storage(times=5, status=503)

    with pytest.raises(StorageError) as info:
        reader.get_output(run_id)

    assert info.value.status_code == 503
    assert info.value.run_id == run_id
    assert len(trigger_emulator.emulator.stats.storage_requests()) == 3


def test_get_output_too_large(trigger_emulator: EmulatorServer) -> None:
    reader = make_reader(trigger_emulator, max_size=50)
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)

    with pytest.raises(OutputTooLargeError) as info:
        reader.get_output(run_id)

    assert info.value.limit == 50
    assert info.value.run_id == run_id


def test_offloaded_download_is_logged(
    trigger_emulator: EmulatorServer, reader: RunReader, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    inline_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=False)

    with caplog.at_level(logging.INFO, logger="flask_trigger_outputs.reader"):
        reader.get_output(run_id)
        reader.get_output(inline_id)

    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert re.fullmatch(
        rf"Downloaded the output of run '{run_id}': \d+ bytes in \d+\.\d{{3}} s\.",
        record.getMessage(),
    )


def test_get_payload_inline_and_offloaded(
    trigger_emulator: EmulatorServer, reader: RunReader
) -> None:
    inline = trigger_emulator.emulator.create_run(
        status="QUEUED", payload=OUTPUT, offload_payload=False
    )
    offloaded = trigger_emulator.emulator.create_run(
        status="EXECUTING", payload=OUTPUT, offload_payload=True
    )

    assert reader.get_payload(inline) == OUTPUT_AS_JSON
    assert reader.get_payload(offloaded) == OUTPUT
    assert reader.get_payload(offloaded, as_json=True) == OUTPUT_AS_JSON


def test_get_payload_of_large_trigger(trigger_emulator: EmulatorServer) -> None:
    policy = RetryPolicy(max_tries=3, sleep=no_sleep)
    client = TriggerClient(
        trigger_emulator.secret_key,
        api_url=trigger_emulator.url,
        retry_policy=policy,
        offload_threshold=1024,
    )
    reader = RunReader(client, PacketDownloader(retry_policy=policy))
    payload = {"urls": [f"https://example.com/{i}" for i in range(200)], "at": CREATED_AT}

    run_id = client.trigger("echo", payload)
    trigger_emulator.emulator.wait_for_run(run_id)

    assert reader.get_payload(run_id) == payload


def test_get_payload_unavailable(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(payload=OUTPUT, offload_payload=True)
    trigger_emulator.emulator.faults.fail_url_signing(times=1)

    with pytest.raises(OutputUnavailableError) as info:
        reader.get_payload(run_id)

    assert "payload of run" in info.value.message


def test_get_result_inline(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=False)

    result = reader.get_result(run_id)

    assert result.run.id == run_id
    assert result.has_output
    assert result.output == OUTPUT_AS_JSON
    assert result.output_offloaded is False
    compact = json.dumps(OUTPUT_AS_JSON, separators=(",", ":")).encode()
    assert result.output_size == len(compact)


def test_get_result_offloaded(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)

    result = reader.get_result(run_id)
    typed = reader.get_result(run_id, as_json=False)

    [key] = trigger_emulator.emulator.stats.downloads
    stored = trigger_emulator.emulator.store.get(key)
    assert stored is not None
    assert result.output == OUTPUT_AS_JSON
    assert result.output_offloaded is True
    assert result.output_size == len(stored.data)
    assert typed.output == OUTPUT


def test_get_result_without_output(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)

    result = reader.get_result(run_id, include_output=False)

    assert not result.has_output
    assert result.output_offloaded is True
    assert result.output_size is None
    assert trigger_emulator.emulator.stats.storage_requests() == []


def test_load_result_json_text(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    run = reader.get_run(run_id)

    result = reader.load_result(run, json_text=True)

    assert result.has_output
    assert result.output is None
    assert result.output_json is not None
    assert json.loads(result.output_json) == OUTPUT_AS_JSON
    assert result.output_offloaded is True
    assert sum(trigger_emulator.emulator.stats.downloads.values()) == 1


def test_get_result_pending_and_failed(trigger_emulator: EmulatorServer, reader: RunReader) -> None:
    pending = trigger_emulator.emulator.create_run(status="EXECUTING")
    failed = trigger_emulator.emulator.create_run(
        status="FAILED", error={"name": "Error", "message": "boom"}
    )

    pending_result = reader.get_result(pending)
    failed_result = reader.get_result(failed)

    assert not pending_result.has_output
    assert not pending_result.run.is_finished
    assert pending_result.output_size is None
    assert not failed_result.has_output
    assert failed_result.run.error is not None
    assert failed_result.run.error.message == "boom"


def vector_cases(vectors_dir: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((vectors_dir / "cases").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        packet = case.get("packet", {})
        if "expected_as_json" in case and isinstance(packet.get("data"), str):
            cases.append(case)
    return cases


def replace_lone_surrogates(value: Any) -> Any:
    """Replace lone surrogates by U+FFFD, as UTF-8 storage of the packet does."""
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in value.items()}
    return value


def test_vectors_read_the_same_inline_and_offloaded(
    trigger_emulator: EmulatorServer, reader: RunReader, vectors_dir: Path
) -> None:
    cases = vector_cases(vectors_dir)
    mismatches = []

    for case in cases:
        packet = StoredPacket(case["packet"]["data"], case["packet"]["dataType"])
        offloaded = trigger_emulator.emulator.create_run(output=packet, offload_output=True)
        inline = trigger_emulator.emulator.create_run(output=packet, offload_output=False)

        offloaded_json = reader.get_output(offloaded, as_json=True)
        inline_json = reader.get_output(inline, as_json=True)

        # A lone surrogate in text/plain data cannot be stored as UTF-8, so
        # the stored packet contains U+FFFD in its place. JSON data escapes it.
        expected = case["expected_as_json"]
        expected_offloaded = expected
        if packet.data_type == "text/plain":
            expected_offloaded = replace_lone_surrogates(expected)
        if inline_json != expected or offloaded_json != expected_offloaded:
            mismatches.append(case["name"])

    assert len(cases) > 50
    assert mismatches == []


def test_large_vector_offloaded(
    trigger_emulator: EmulatorServer, reader: RunReader, vectors_dir: Path
) -> None:
    large = vectors_dir / "large"
    body = (large / "large_crawl_700k.body").read_bytes()
    packet = json.loads((large / "large_crawl_700k.packet.json").read_text(encoding="utf-8"))
    expected = json.loads(
        (large / "large_crawl_700k.expected_as_json.json").read_text(encoding="utf-8")
    )
    run_id = trigger_emulator.emulator.create_run(
        output=StoredPacket(body, packet["dataType"]), offload_output=True
    )

    result = reader.get_result(run_id)

    assert result.output == expected
    assert result.output_offloaded is True
    assert result.output_size == len(body)
