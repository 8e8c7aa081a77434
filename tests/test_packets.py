"""Tests for presigned downloads and uploads, against the emulator's object store."""

from __future__ import annotations

import logging

import pytest
import requests
from clocks import FakeTime

from flask_trigger_outputs._retry import RetryPolicy, TransientError
from flask_trigger_outputs.emulator import EmulatorServer
from flask_trigger_outputs.errors import (
    OutputTooLargeError,
    StorageError,
    UpstreamTimeoutError,
)
from flask_trigger_outputs.packets import (
    ExpiredUrlError,
    PacketDownloader,
    PacketUploader,
    redact_url,
)
from flask_trigger_outputs.storage import give_up_error

RUN_ID = "run_packettest1"
BODY = b'{"json":{"pages":[' + b",".join(b'"page-%d"' % i for i in range(400)) + b"]}}"
CONTENT_TYPE = "application/super+json"


@pytest.fixture
def fake_time() -> FakeTime:
    # The downloader's default retry policy, on the fake clock.
    return FakeTime(max_tries=4, max_time=30.0, initial_wait=0.5, factor=2.0, max_wait=5.0)


@pytest.fixture
def downloader(fake_time: FakeTime) -> PacketDownloader:
    return PacketDownloader(connect_timeout=2.0, read_timeout=2.0, retry_policy=fake_time.policy())


def store(server: EmulatorServer, key: str, data: bytes = BODY) -> str:
    server.emulator.store.put(key, data, CONTENT_TYPE)
    return server.emulator.presign(key)


def test_download_returns_body_and_content_type(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")

    packet = downloader.download(url, run_id=RUN_ID)

    assert packet.data == BODY
    assert packet.content_type == CONTENT_TYPE
    assert packet.size == len(BODY)


def test_download_sends_no_credentials_or_cookies(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    # A cookie that reached the jar anyway must still not be sent.
    downloader._session.cookies.set("session", "secret", domain="127.0.0.1", path="/")

    downloader.download(url, run_id=RUN_ID)

    [request] = trigger_emulator.emulator.stats.storage_requests()
    assert "authorization" not in request.headers
    assert "cookie" not in request.headers
    assert request.status == 200


def test_download_sends_query_verbatim(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    # requests alone would turn %7E into "~" and %41 into "A".
    query = "a=%7E%41&b=x%2Fy+z&c==&d=%3D%26&X-Amz-Signature=0"
    url = f"{trigger_emulator.url}/storage/packets/some/key.json?{query}"

    with pytest.raises(ExpiredUrlError):
        downloader.download(url, run_id=RUN_ID)

    [request] = trigger_emulator.emulator.stats.storage_requests()
    assert request.query == query


def test_download_signed_key_with_special_characters(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/a b+c=d~e%f.json")

    packet = downloader.download(url, run_id=RUN_ID)

    assert packet.data == BODY


def test_download_retries_server_errors(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader, fake_time: FakeTime
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.fail_storage(times=2, status=503)

    packet = downloader.download(url, run_id=RUN_ID)

    assert packet.data == BODY
    assert trigger_emulator.emulator.stats.downloads[key] == 3
    assert fake_time.sleeps == [0.25, 0.5]


def test_download_gives_up_after_max_tries(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader, fake_time: FakeTime
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.fail_storage(times=10, status=500)

    with pytest.raises(StorageError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert type(info.value) is StorageError
    assert info.value.status_code == 500
    assert info.value.run_id == RUN_ID
    assert info.value.message == (
        f"Downloading the packet of run {RUN_ID!r} from {trigger_emulator.url[7:]} failed"
        " (HTTP 500, InternalError) after 4 attempts. Check that the storage host is"
        " reachable and try again."
    )
    assert trigger_emulator.emulator.stats.downloads[key] == 4
    assert len(fake_time.sleeps) == 3


def test_download_stops_at_max_time(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.fail_storage(times=10, status=503)
    downloader = PacketDownloader(retry_policy=fake_time.policy(max_tries=10, max_time=1.0))

    with pytest.raises(StorageError):
        downloader.download(url, run_id=RUN_ID)

    # Waits of 0.25 and 0.5 s, then the 0.25 s left in the budget.
    assert fake_time.sleeps == [0.25, 0.5, 0.25]
    assert trigger_emulator.emulator.stats.downloads[key] == 4


def test_download_expired_url_is_not_retried(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader, fake_time: FakeTime
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.expire_urls_now()

    with pytest.raises(ExpiredUrlError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert isinstance(info.value, StorageError)
    assert info.value.status_code == 403
    assert info.value.retryable is False
    assert info.value.message == (
        f"The storage host {trigger_emulator.url[7:]} rejected the presigned URL for the"
        f" packet of run {RUN_ID!r} (HTTP 403, AccessDenied); it has probably expired."
        " Retrieve the run again for a fresh URL."
    )
    assert trigger_emulator.emulator.stats.downloads[key] == 1
    assert fake_time.sleeps == []


def test_download_missing_key_is_not_retried(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    url = trigger_emulator.emulator.presign("proj/run_packettest1/missing.json")

    with pytest.raises(StorageError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert type(info.value) is StorageError
    assert info.value.status_code == 404
    assert info.value.retryable is False
    assert "HTTP 404, NoSuchKey" in info.value.message
    assert len(trigger_emulator.emulator.stats.storage_requests()) == 1


def test_download_retries_truncated_body(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.truncate_downloads(times=1, keep_bytes=100)

    packet = downloader.download(url, run_id=RUN_ID)

    assert packet.data == BODY
    assert trigger_emulator.emulator.stats.downloads[key] == 2


def test_download_retries_connection_reset(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.reset_downloads(times=2, keep_bytes=50)

    packet = downloader.download(url, run_id=RUN_ID)

    assert packet.data == BODY
    assert trigger_emulator.emulator.stats.downloads[key] == 3


def test_download_truncated_every_time(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.truncate_downloads(times=10, keep_bytes=100)

    with pytest.raises(StorageError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert type(info.value) is StorageError
    assert "body cut short" in info.value.message
    assert "after 4 attempts" in info.value.message
    assert info.value.retryable is True
    assert trigger_emulator.emulator.stats.downloads[key] == 4


def test_download_too_large_by_content_length(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    downloader = PacketDownloader(max_size=1000, retry_policy=fake_time.policy())

    with pytest.raises(OutputTooLargeError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert info.value.limit == 1000
    assert info.value.message == (
        f"The stored packet of run {RUN_ID!r} ({len(BODY)} bytes) is larger than the"
        " maximum of 1000 bytes, so the download was aborted. Raise the maximum output"
        " size (TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE) to accept it."
    )
    assert trigger_emulator.emulator.stats.downloads[key] == 1


def test_download_exactly_max_size(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    downloader = PacketDownloader(max_size=len(BODY), retry_policy=fake_time.policy())

    assert downloader.download(url, run_id=RUN_ID).data == BODY


def test_download_read_timeout(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.slow_downloads(times=2, delay=1.0, keep_bytes=10)
    downloader = PacketDownloader(read_timeout=0.1, retry_policy=fake_time.policy(max_tries=2))

    with pytest.raises(UpstreamTimeoutError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert info.value.message == (
        f"The storage host {trigger_emulator.url[7:]} did not respond within the read"
        f" timeout of 0.1 s while downloading the packet of run {RUN_ID!r} (2 attempts)."
        " Try again later."
    )
    assert trigger_emulator.emulator.stats.downloads[key] == 2


def test_give_up_error_names_connect_timeout() -> None:
    failure = TransientError("ConnectTimeout", cause=requests.ConnectTimeout())
    failure.attempts = 3

    error = give_up_error(
        failure,
        verb="download",
        subject="the packet of run 'run_abc'",
        host="storage.example",
        connect_timeout=2.0,
        read_timeout=30.0,
        run_id="run_abc",
    )

    assert isinstance(error, UpstreamTimeoutError)
    assert error.message == (
        "The storage host storage.example did not accept a connection within the connect"
        " timeout of 2 s while downloading the packet of run 'run_abc' (3 attempts)."
        " Try again later."
    )


def test_download_slow_body_exceeds_max_time(trigger_emulator: EmulatorServer) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    # Every gap is shorter than the read timeout, but the body as a whole
    # takes longer than the time budget.
    trigger_emulator.emulator.faults.slow_downloads(times=1, delay=1.0, keep_bytes=10)
    policy = RetryPolicy(max_tries=4, max_time=0.2, sleep=lambda seconds: None)
    downloader = PacketDownloader(read_timeout=5.0, retry_policy=policy)

    with pytest.raises(UpstreamTimeoutError) as info:
        downloader.download(url, run_id=RUN_ID)

    assert info.value.message == (
        f"The storage host {trigger_emulator.url[7:]} did not send the packet of run"
        f" {RUN_ID!r} within the time budget of 0.2 s, so the download was aborted."
        " Try again later, or raise TRIGGER_OUTPUTS_MAX_RETRY_TIME if the storage host"
        " is this slow."
    )
    assert info.value.run_id == RUN_ID
    assert trigger_emulator.emulator.stats.downloads[key] == 1


def test_download_logs_retries_without_query(
    trigger_emulator: EmulatorServer,
    downloader: PacketDownloader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    trigger_emulator.emulator.faults.fail_storage(times=1, status=503)

    with caplog.at_level(logging.DEBUG):
        downloader.download(url, run_id=RUN_ID)

    [record] = [r for r in caplog.records if r.name == "flask_trigger_outputs._retry"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"Downloading the packet of run {RUN_ID!r} from {trigger_emulator.url[7:]} failed"
        " (HTTP 503, SlowDown) on attempt 1 of 4; retrying in 0.25 s."
    )
    assert record.trigger_run_id == RUN_ID  # type: ignore[attr-defined]
    # urllib3 logs request targets with their query at DEBUG; this package never does.
    for package_record in caplog.records:
        if package_record.name.startswith("flask_trigger_outputs"):
            assert "X-Amz" not in package_record.getMessage()


def test_download_rejects_invalid_url(downloader: PacketDownloader) -> None:
    for url in ("ftp://127.0.0.1/x", "http://127.0.0.1/a b", "/relative"):
        with pytest.raises(StorageError) as info:
            downloader.download(url, run_id=RUN_ID)
        assert info.value.message == (
            f"Trigger.dev returned an invalid presigned URL for run {RUN_ID!r}: expected an"
            " http or https URL of printable ASCII characters."
        )
        assert info.value.retryable is False


def test_stream_yields_body(trigger_emulator: EmulatorServer, downloader: PacketDownloader) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")

    content_type, content_length, chunks = downloader.stream(url, run_id=RUN_ID, chunk_size=1000)
    parts = list(chunks)

    assert content_type == CONTENT_TYPE
    assert content_length == len(BODY)
    assert b"".join(parts) == BODY
    assert max(len(part) for part in parts) <= 1000


def test_stream_truncated_body_raises(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.truncate_downloads(times=1, keep_bytes=100)

    _, _, chunks = downloader.stream(url, run_id=RUN_ID)
    with pytest.raises(StorageError) as info:
        b"".join(chunks)

    assert "body cut short" in info.value.message
    assert trigger_emulator.emulator.stats.downloads[key] == 1


def test_stream_retries_before_first_byte(
    trigger_emulator: EmulatorServer, downloader: PacketDownloader
) -> None:
    key = "proj/run_packettest1/output.json"
    url = store(trigger_emulator, key)
    trigger_emulator.emulator.faults.fail_storage(times=1, status=503)

    _, _, chunks = downloader.stream(url, run_id=RUN_ID)

    assert b"".join(chunks) == BODY
    assert trigger_emulator.emulator.stats.downloads[key] == 2


def test_stream_slow_body_exceeds_max_time(trigger_emulator: EmulatorServer) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    trigger_emulator.emulator.faults.slow_downloads(times=1, delay=1.0, keep_bytes=10)
    policy = RetryPolicy(max_tries=4, max_time=0.2, sleep=lambda seconds: None)
    downloader = PacketDownloader(read_timeout=5.0, retry_policy=policy)

    _, _, chunks = downloader.stream(url, run_id=RUN_ID, chunk_size=10)
    with pytest.raises(UpstreamTimeoutError) as info:
        b"".join(chunks)

    assert "within the time budget of 0.2 s" in info.value.message
    assert info.value.run_id == RUN_ID


def test_stream_time_between_chunks_not_counted(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    downloader = PacketDownloader(retry_policy=fake_time.policy(max_time=1.0))

    _, _, chunks = downloader.stream(url, run_id=RUN_ID, chunk_size=1000)
    parts = []
    for part in chunks:
        parts.append(part)
        # A slow client between chunks, well past the budget in total.
        fake_time.sleep(0.6)

    assert len(parts) > 2
    assert b"".join(parts) == BODY


def test_stream_expired_url(trigger_emulator: EmulatorServer, downloader: PacketDownloader) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    trigger_emulator.emulator.faults.expire_urls_now()

    with pytest.raises(ExpiredUrlError):
        downloader.stream(url, run_id=RUN_ID)


def test_stream_too_large(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    url = store(trigger_emulator, "proj/run_packettest1/output.json")
    downloader = PacketDownloader(max_size=10, retry_policy=fake_time.policy())

    with pytest.raises(OutputTooLargeError):
        downloader.stream(url, run_id=RUN_ID)


def test_upload_stores_packet(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    key = "trigger/site-crawl/1-abc/payload.json"
    url = trigger_emulator.emulator.presign(key, "PUT")
    trigger_emulator.emulator.faults.fail_storage(times=1, status=503, method="PUT")
    uploader = PacketUploader(retry_policy=fake_time.policy())

    uploader.upload(url, BODY, CONTENT_TYPE, task_id="site-crawl")

    stored = trigger_emulator.emulator.store.get(key)
    assert stored is not None
    assert stored.data == BODY
    assert stored.content_type == CONTENT_TYPE
    assert trigger_emulator.emulator.stats.uploads[key] == 2
    for request in trigger_emulator.emulator.stats.storage_requests():
        assert "authorization" not in request.headers


def test_upload_rejected(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    key = "trigger/site-crawl/1-abc/payload.json"
    url = trigger_emulator.emulator.presign(key, "PUT")
    trigger_emulator.emulator.faults.expire_urls_now()
    uploader = PacketUploader(retry_policy=fake_time.policy())

    with pytest.raises(StorageError) as info:
        uploader.upload(url, BODY, CONTENT_TYPE, task_id="site-crawl")

    assert info.value.status_code == 403
    assert info.value.task_id == "site-crawl"
    assert trigger_emulator.emulator.stats.uploads[key] == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://bucket.r2.cloudflarestorage.com/p/run_x/output.json"
            "?X-Amz-Signature=abc&X-Amz-Credential=k%2F1",
            "https://bucket.r2.cloudflarestorage.com/p/run_x/output.json",
        ),
        ("http://user:pw@127.0.0.1:9000/a/b?q=1#frag", "http://127.0.0.1:9000/a/b"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x"),
        ("http://127.0.0.1:99999999/x?y", "<invalid URL>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
