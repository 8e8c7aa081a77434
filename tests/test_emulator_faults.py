"""The emulator's fault controls, each checked over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from flask_trigger_outputs.emulator import Emulator, EmulatorServer

BODY = b'{"json":{"pages":["' + b"p" * 400 + b'"]}}'


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(offload_threshold=64)) as running:
        yield running


@pytest.fixture
def session(server: EmulatorServer) -> requests.Session:
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {server.secret_key}"
    return api


@pytest.fixture
def url(server: EmulatorServer) -> str:
    server.emulator.store.put("out.json", BODY, "application/super+json")
    return server.emulator.presign("out.json")


def retrieve(server: EmulatorServer, session: requests.Session, run_id: str) -> requests.Response:
    return session.get(f"{server.url}/api/v3/runs/{run_id}", timeout=5)


def test_fail_api_next_calls(server: EmulatorServer, session: requests.Session) -> None:
    run_id = server.emulator.create_run(output=1)
    server.emulator.faults.fail_api(times=2, status=503)

    statuses = [retrieve(server, session, run_id).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert server.emulator.stats.api_calls["retrieve"] == 3


def test_fail_api_body_is_json_error(server: EmulatorServer, session: requests.Session) -> None:
    server.emulator.faults.fail_api(status=500)

    response = retrieve(server, session, "run_any")

    assert response.json() == {"error": "Emulated failure with status 500"}
    assert "x-should-retry" not in response.headers


@pytest.mark.parametrize(("should_retry", "header"), [(True, "true"), (False, "false")])
def test_fail_api_should_retry_header(
    server: EmulatorServer, session: requests.Session, should_retry: bool, header: str
) -> None:
    server.emulator.faults.fail_api(status=500, should_retry=should_retry)

    response = retrieve(server, session, "run_any")

    assert response.headers["x-should-retry"] == header


def test_fail_api_only_matching_route(server: EmulatorServer, session: requests.Session) -> None:
    run_id = server.emulator.create_run(output=1)
    server.emulator.faults.fail_api(times=1, status=500, path_prefix="/api/v1/tasks/")

    retrieved = retrieve(server, session, run_id)
    triggered = session.post(
        f"{server.url}/api/v1/tasks/echo/trigger", json={"payload": 1}, timeout=5
    )
    triggered_again = session.post(
        f"{server.url}/api/v1/tasks/echo/trigger", json={"payload": 1}, timeout=5
    )

    assert retrieved.status_code == 200
    assert triggered.status_code == 500
    assert triggered_again.status_code == 200


def test_fail_api_comes_before_auth(server: EmulatorServer) -> None:
    server.emulator.faults.fail_api(status=502)

    response = requests.get(f"{server.url}/api/v3/runs/run_x", timeout=5)

    assert response.status_code == 502


def test_rate_limit_sends_reset_in_ms(server: EmulatorServer, session: requests.Session) -> None:
    server.emulator.faults.rate_limit(times=1, reset_after=2.0)
    before_ms = time.time() * 1000

    limited = retrieve(server, session, "run_any")
    after = retrieve(server, session, "run_any")

    assert limited.status_code == 429
    assert limited.json() == {"error": "Rate limit exceeded"}
    reset_ms = int(limited.headers["x-ratelimit-reset"])
    assert before_ms + 1500 <= reset_ms <= time.time() * 1000 + 2500
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert after.status_code == 404


def test_api_latency_delays_response(server: EmulatorServer, session: requests.Session) -> None:
    server.emulator.faults.latency(api=0.5)

    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{server.url}/api/v3/runs/run_any", timeout=(5, 0.1))

    server.emulator.faults.clear()
    assert retrieve(server, session, "run_any").status_code == 404


def test_storage_latency_delays_download(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.latency(storage=0.5)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=(5, 0.1))


def test_fail_storage_next_downloads(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.fail_storage(times=2, status=503)

    responses = [requests.get(url, timeout=5) for _ in range(3)]

    assert [r.status_code for r in responses] == [503, 503, 200]
    assert "<Code>SlowDown</Code>" in responses[0].text
    assert responses[0].headers["Content-Type"] == "application/xml"
    assert responses[2].content == BODY
    assert server.emulator.stats.downloads["out.json"] == 3


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalError"), (404, "NoSuchKey"), (403, "AccessDenied")]
)
def test_fail_storage_xml_code(server: EmulatorServer, url: str, status: int, code: str) -> None:
    server.emulator.faults.fail_storage(status=status)

    response = requests.get(url, timeout=5)

    assert response.status_code == status
    assert f"<Code>{code}</Code>" in response.text


def test_fail_storage_skips_uploads_by_default(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.fail_storage(times=1, status=500)
    put_url = server.emulator.presign("new.txt", "PUT")

    put = requests.put(put_url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=5)
    get = requests.get(url, timeout=5)

    assert put.status_code == 200
    assert get.status_code == 500


def test_fail_storage_uploads(server: EmulatorServer) -> None:
    server.emulator.faults.fail_storage(times=1, status=503, method="PUT")
    put_url = server.emulator.presign("new.txt", "PUT")

    first = requests.put(put_url, data=b"x", timeout=5)
    second = requests.put(put_url, data=b"x", timeout=5)

    assert first.status_code == 503
    assert second.status_code == 200


def test_truncate_downloads(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.truncate_downloads(times=1, keep_bytes=20)

    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        requests.get(url, timeout=5)

    assert requests.get(url, timeout=5).content == BODY


def test_truncated_body_is_what_was_sent(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.truncate_downloads(times=1, keep_bytes=20)

    response = requests.get(url, timeout=5, stream=True)
    received = bytearray()

    def read_all() -> None:
        for chunk in response.iter_content(1):
            received.extend(chunk)

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        read_all()

    assert int(response.headers["Content-Length"]) == len(BODY)
    assert bytes(received) == BODY[:20]


def test_reset_downloads(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.reset_downloads(times=1, keep_bytes=20)

    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="reset"):
        requests.get(url, timeout=5)

    assert requests.get(url, timeout=5).content == BODY


def test_slow_downloads_pause_mid_body(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.slow_downloads(times=1, delay=1.0, keep_bytes=20)

    response = requests.get(url, timeout=(5, 0.2), stream=True)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError, match="timed out"):
        response.content  # noqa: B018 - reading the body is the point

    assert requests.get(url, timeout=5).content == BODY


def test_slow_download_completes_with_patient_client(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.slow_downloads(times=1, delay=0.2, keep_bytes=20)

    response = requests.get(url, timeout=5)

    assert response.content == BODY


def test_bad_signatures(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.bad_signatures(times=1)

    rejected = requests.get(url, timeout=5)
    accepted = requests.get(url, timeout=5)

    assert rejected.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in rejected.text
    assert accepted.status_code == 200


def test_expire_urls_now(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.expire_urls_now()
    fresh = server.emulator.presign("out.json")

    expired = requests.get(url, timeout=5)

    assert expired.status_code == 403
    assert "<Message>Request has expired</Message>" in expired.text
    assert requests.get(fresh, timeout=5).status_code == 200


def test_fail_url_signing_omits_presigned_urls(
    server: EmulatorServer, session: requests.Session
) -> None:
    run_id = server.emulator.create_run(output="o" * 100, payload="p" * 100)
    server.emulator.faults.fail_url_signing(times=1)

    unsigned = retrieve(server, session, run_id).json()
    signed = retrieve(server, session, run_id).json()

    assert unsigned["status"] == "COMPLETED"
    for name in ("output", "outputPresignedUrl", "payload", "payloadPresignedUrl"):
        assert name not in unsigned
    assert "outputPresignedUrl" in signed


def test_fail_url_signing_keeps_inline_output(
    server: EmulatorServer, session: requests.Session
) -> None:
    run_id = server.emulator.create_run(output="small")
    server.emulator.faults.fail_url_signing(times=1)

    assert retrieve(server, session, run_id).json()["output"] == "small"


def test_clear_disarms_everything(server: EmulatorServer, url: str) -> None:
    faults = server.emulator.faults
    faults.fail_storage(times=5)
    faults.fail_api(times=5)
    faults.rate_limit(times=5)
    faults.truncate_downloads(times=5)
    faults.bad_signatures(times=5)
    faults.fail_url_signing(times=5)
    faults.latency(api=5, storage=5)

    faults.clear()

    assert requests.get(url, timeout=2).content == BODY
    headers = {"Authorization": f"Bearer {server.secret_key}"}
    response = requests.get(f"{server.url}/api/v3/runs/run_x", headers=headers, timeout=2)
    assert response.status_code == 404


def test_faults_are_consumed_once_under_concurrency(server: EmulatorServer, url: str) -> None:
    server.emulator.faults.fail_storage(times=5, status=503)
    statuses: list[int] = []
    lock = threading.Lock()

    def download() -> None:
        status = requests.get(url, timeout=5).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=download) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(statuses) == [200] * 7 + [503] * 5
