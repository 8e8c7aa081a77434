"""The secret key and presigned URL signatures stay out of every output.

One test serves an app with the extension on a real werkzeug server and
sends requests under the emulator's faults, with every logger at DEBUG
(the package's, urllib3's, backoff's and werkzeug's). It calls the helper
and the CLI under the same faults. Then it scans everything it captured:
log records with their tracebacks, response bodies and headers, error
messages with their chained causes, and CLI output. ``format=redirect``,
which hands the client a presigned URL, is off by default, so no signature
may appear anywhere.

Another test checks the requests the storage host received: none carries an
``Authorization`` header or a cookie, also after a redirect that sets one.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from extension_tasks import register_tasks
from flask import Flask
from reliability_report import instrument
from werkzeug.serving import make_server

from flask_trigger_outputs import TriggerOutputs, TriggerOutputsError, get_run_output
from flask_trigger_outputs.emulator import Emulator, EmulatorServer, StoredPacket

SECRET_KEY = "tr_dev_secretscan9c4e7a1f3b6d2e8a"
WRONG_KEY = "tr_dev_wrongscan2b7d9e4c1a6f3b8d"

CONFIG: dict[str, Any] = {
    "TRIGGER_OUTPUTS_CONNECT_TIMEOUT": 1.0,
    "TRIGGER_OUTPUTS_READ_TIMEOUT": 0.5,
    "TRIGGER_OUTPUTS_MAX_TRIES": 2,
    "TRIGGER_OUTPUTS_MAX_RETRY_TIME": 5.0,
    "TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE": 64 * 1024,
    "TRIGGER_OUTPUTS_POLL_COALESCE": 0.0,
    # The cache would serve repeated reads without a request, so no fault
    # after the first read would reach the client.
    "TRIGGER_OUTPUTS_CACHE_MAX_BYTES": 0,
}

OUTPUT = {"pages": [{"url": f"https://garden.example/{i}", "words": i} for i in range(60)]}

_SIGNATURE = re.compile(r"X-Amz-Signature=([0-9a-f]+)")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(SECRET_KEY, offload_threshold=1024)) as server:
        register_tasks(server)
        yield server


def make_app(server: EmulatorServer, **config: Any) -> Flask:
    app = Flask("secrets_app")
    app.config.update(
        {"TRIGGER_API_URL": server.url, "TRIGGER_SECRET_KEY": SECRET_KEY, **CONFIG, **config}
    )
    TriggerOutputs(app)
    instrument(app)
    return app


class LiveApp:
    """An app served by werkzeug's development server on 127.0.0.1, so
    werkzeug writes its request log lines as in development."""

    def __init__(self, app: Flask) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LiveApp:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._thread.join(5)
        self._server.server_close()


class Captured:
    """Everything the test collects for the scan, by where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, origin: str, text: str) -> None:
        self.texts.append((origin, text))

    def add_error(self, origin: str, error: BaseException) -> None:
        self.add(origin, str(error))
        self.add(origin + " (repr)", repr(error))
        self.add(origin + " (traceback)", "".join(traceback.format_exception(error)))

    def add_response(self, origin: str, response: requests.Response) -> None:
        self.add(origin + " body", response.text)
        for name, value in response.headers.items():
            self.add(f"{origin} header {name}", value)


def offloaded_run(emulator: Emulator, output: Any = OUTPUT) -> str:
    return emulator.create_run("site-crawl", output=output, offload_output=True)


def run_faults(server: EmulatorServer, captured: Captured) -> None:
    """Send requests to the routes, the helper and the CLI under every
    fault, and capture what each returns."""
    emulator = server.emulator
    faults = emulator.faults
    app = make_app(server)
    wrong_key_app = make_app(server, TRIGGER_SECRET_KEY=WRONG_KEY)

    invalid = emulator.create_run(
        "site-crawl", output=StoredPacket('{"pages": [', "application/json"), offload_output=True
    )
    too_large = offloaded_run(emulator, {"html": "x" * (80 * 1024)})
    good = offloaded_run(emulator)

    arms: dict[str, Callable[[], None]] = {
        "storage 503": lambda: faults.fail_storage(times=2, status=503),
        "connection reset": lambda: faults.reset_downloads(times=2, keep_bytes=50),
        "body cut short": lambda: faults.truncate_downloads(times=2, keep_bytes=50),
        "slow body": lambda: faults.slow_downloads(times=2, delay=1.0, keep_bytes=50),
        "expired URL": faults.expire_urls_now,
        "bad signature": lambda: faults.bad_signatures(times=2),
        "redirect": lambda: faults.redirect_downloads(times=1),
        "rate limit": lambda: faults.rate_limit(times=2, reset_after=0.1),
        "API 500": lambda: faults.fail_api(times=2, status=500),
        "no URL signed": lambda: faults.fail_url_signing(times=1),
    }

    with LiveApp(app) as live, LiveApp(wrong_key_app) as wrong:
        session = requests.Session()

        def get(base: str, origin: str, **params: str) -> None:
            response = session.get(
                f"{base}/api/crawl", params=params, allow_redirects=False, timeout=30
            )
            assert response.status_code < 500 or response.status_code in (502, 504), origin
            captured.add_response(origin, response)

        for name, arm in arms.items():
            run_id = offloaded_run(emulator)
            for output_format in ("json", "raw"):
                faults.clear()
                arm()
                get(live.url, f"{name} format={output_format}", runId=run_id, format=output_format)
            faults.clear()
            arm()
            with app.app_context():
                try:
                    get_run_output(run_id, as_json=True)
                except TriggerOutputsError as error:
                    captured.add_error(f"{name} helper", error)
            faults.clear()
            arm()
            result = app.test_cli_runner().invoke(args=["trigger-outputs", "output", run_id])
            captured.add(f"{name} CLI", result.output)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                captured.add_error(f"{name} CLI exception", result.exception)

        faults.clear()
        get(live.url, "invalid packet", runId=invalid)
        get(live.url, "too large", runId=too_large)
        get(live.url, "format=redirect", runId=good, format="redirect")
        get(wrong.url, "wrong key", runId=good)
        with wrong_key_app.app_context():
            try:
                get_run_output(good)
            except TriggerOutputsError as error:
                captured.add_error("wrong key helper", error)

        runner = app.test_cli_runner()
        for args in (["config"], ["status", good], ["stats"], ["output", "--payload", good]):
            captured.add(f"CLI {args[0]}", runner.invoke(args=["trigger-outputs", *args]).output)
        wrong_runner = wrong_key_app.test_cli_runner()
        captured.add(
            "wrong key CLI", wrong_runner.invoke(args=["trigger-outputs", "status", good]).output
        )


def issued_signatures(emulator: Emulator) -> set[str]:
    """Return the signature of every presigned URL a client sent to the store."""
    signatures: set[str] = set()
    for recorded in emulator.stats.storage_requests():
        signatures.update(parse_qs(recorded.query).get("X-Amz-Signature", []))
    return signatures


def test_secrets_absent_from_all_output(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (None, "urllib3", "backoff", "werkzeug", "flask_trigger_outputs"):
        caplog.set_level(logging.DEBUG, logger=name)
    captured = Captured()

    run_faults(server, captured)

    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        captured.add(f"log {record.name} {record.levelname}", text)

    signatures = issued_signatures(server.emulator)
    assert len(signatures) >= 10
    # Every logger wrote at DEBUG, so the scan saw the lines a leak would be in.
    logged_by = {record.name.split(".")[0] for record in caplog.records}
    assert {"urllib3", "werkzeug", "flask_trigger_outputs"} <= logged_by
    assert any(record.levelno == logging.DEBUG for record in caplog.records)

    for secret in (SECRET_KEY, WRONG_KEY):
        leaks = [origin for origin, text in captured.texts if secret in text]
        assert leaks == [], f"the secret key appears in: {leaks}"
    for origin, text in captured.texts:
        found = set(_SIGNATURE.findall(text)) | {s for s in signatures if s in text}
        assert not found, f"a presigned URL signature appears in {origin}: {text[:300]!r}"


def test_storage_requests_carry_no_credentials(server: EmulatorServer) -> None:
    emulator = server.emulator
    app = make_app(server)
    # A cookie in the app's own jar and a browser cookie on the incoming
    # request must not reach the storage host either.
    client = app.test_client()
    client.set_cookie("session", "user-session-cookie", domain="localhost")
    run_id = offloaded_run(emulator)
    emulator.faults.redirect_downloads(times=1)

    response = client.get("/api/crawl", query_string={"runId": run_id})

    assert response.status_code == 200
    assert response.get_json()["output"] == OUTPUT
    storage = emulator.stats.storage_requests()
    assert [request.status for request in storage] == [307, 200]
    assert storage[0].path == storage[1].path
    assert storage[0].query == storage[1].query
    for request in storage:
        assert "authorization" not in request.headers
        assert "cookie" not in request.headers
    api = [request for request in emulator.stats.requests if request.kind == "api"]
    assert api
    for request in api:
        assert request.headers["authorization"] == f"Bearer {SECRET_KEY}"
        assert "cookie" not in request.headers


def _closed_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("failure", ["unreachable storage", "connection reset"])
def test_signature_absent_from_user_view_traceback(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    emulator = server.emulator
    issued: list[str] = []
    storage_url = server.url
    if failure == "unreachable storage":
        storage_url = f"http://127.0.0.1:{_closed_port()}"
    else:
        emulator.faults.reset_downloads(times=10, keep_bytes=0)

    def presign(key: str) -> str:
        url = emulator.store.presign(storage_url, key, "GET")
        issued.append(url)
        return url

    emulator._presigner = lambda base_url: presign  # type: ignore[method-assign]
    app = make_app(server)
    errors: list[BaseException] = []

    # A view of the user's own, not the blueprint's: Flask logs the error
    # it lets escape, with the whole exception chain.
    @app.get("/mine/<run_id>")
    def my_view(run_id: str) -> Any:
        try:
            return get_run_output(run_id, as_json=True)
        except TriggerOutputsError as error:
            errors.append(error)
            raise

    caplog.set_level(logging.ERROR, logger=app.logger.name)
    response = app.test_client().get(f"/mine/{offloaded_run(emulator)}")

    assert response.status_code == 500
    assert len(errors) == 1
    logged = [record for record in caplog.records if record.exc_info]
    assert logged
    texts = ["".join(traceback.format_exception(errors[0]))]
    texts += [
        record.getMessage() + "".join(traceback.format_exception(*record.exc_info))
        for record in logged
        if record.exc_info
    ]
    signatures = {match for url in issued for match in _SIGNATURE.findall(url)}
    assert signatures
    for text in texts:
        assert not set(_SIGNATURE.findall(text)), text
        assert not {signature for signature in signatures if signature in text}, text
