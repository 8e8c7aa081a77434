"""The fault matrix: every failure the emulator can inject, against the
helper and the routes of an app with the extension.

Each row injects one fault twice: once under ``get_run_output`` in an app
context, once under ``GET /api/crawl`` in a fresh app. It then clears the
fault and polls the route again from the same app. Every row checks that

- the package never responds 500, and every error response is the JSON
  error of the expected code;
- a 200 response carries exactly the right output, never a partial or
  undecoded one;
- the request after the fault gets the right output, and a failed download
  was not cached: the output is downloaded again;
- the request finishes within the pytest timeout of the row, far below what
  a hang would take.

The retry waits go through the policies' injected ``sleep``, which records
them instead of sleeping, and the jitter is fixed at half its range, so the
waits in the table are deterministic. The timeouts are real: 0.5 s to read,
3 attempts per call and a 5 s budget per call. The module writes the table
to docs/reliability.md once every row has run.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from reliability_report import instrument, markdown_table, write_section

from flask_trigger_outputs import TriggerOutputs, TriggerOutputsError, get_run_output
from flask_trigger_outputs.emulator import Emulator, EmulatorServer, StoredPacket

SECRET_KEY = "tr_dev_faultmatrix7d1e4c0b9a2f"
WRONG_KEY = "tr_dev_wrongkey5f0c2d9e8b7a"

#: Config of every app in the matrix: short timeouts and a small retry budget.
APP_CONFIG: dict[str, Any] = {
    "TESTING": True,
    "TRIGGER_OUTPUTS_CONNECT_TIMEOUT": 1.0,
    "TRIGGER_OUTPUTS_READ_TIMEOUT": 0.5,
    "TRIGGER_OUTPUTS_MAX_TRIES": 3,
    "TRIGGER_OUTPUTS_MAX_RETRY_TIME": 5.0,
    "TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE": 64 * 1024,
    "TRIGGER_OUTPUTS_POLL_COALESCE": 0.0,
}

#: Packets of this size or more are offloaded by the emulator.
OFFLOAD_THRESHOLD = 1024

TASK = "site-crawl"
ROUTE = "/api/crawl"


def crawl_output(pages: int = 40) -> dict[str, Any]:
    """Return a crawl result of about 100 bytes per page."""
    return {
        "site": "garden.example",
        "pages": [
            {"url": f"https://garden.example/p/{i}", "title": f"Page {i}", "words": 100 + i}
            for i in range(pages)
        ],
    }


#: The output of most rows: about 3 KB, so it is offloaded.
OUTPUT = crawl_output()


@dataclass
class Environment:
    """The emulator shared by the rows, and the apps made against it."""

    server: EmulatorServer
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def make_app(self, **config: Any) -> Flask:
        app = Flask("fault_matrix")
        app.config.update(
            {
                **APP_CONFIG,
                "TRIGGER_API_URL": self.server.url,
                "TRIGGER_SECRET_KEY": SECRET_KEY,
                **config,
            }
        )
        TriggerOutputs(app)
        return app

    def create_offloaded(self, output: Any = OUTPUT) -> str:
        return self.emulator.create_run(TASK, output=output, offload_output=True)

    def output_key(self, run_id: str) -> str:
        """Return the object-store key of an offloaded output."""
        packet = self.emulator.runs.get(run_id).output
        assert packet is not None
        assert isinstance(packet.data, str)
        return packet.data

    def replace_output(self, run_id: str, value: Any) -> None:
        """Overwrite a stored output with the JSON text of ``value``."""
        data = json.dumps(value).encode()
        self.emulator.store.put(self.output_key(run_id), data, "application/json")


def noop(app: Flask) -> None:
    pass


@dataclass
class Scenario:
    """One row, set up: the run to read and how to inject and clear the fault."""

    run_id: str
    #: The output the request after the fault must return.
    expected: Any
    #: Injects the fault; called with the app about to send the request.
    arm: Callable[[Flask], None] = noop
    #: Removes what ``arm`` cannot disarm by itself (a corrupted object, an
    #: API that is down), before the request after the fault.
    clear: Callable[[], None] = lambda: None
    #: The output a 200 response under the fault must carry, when it is not
    #: ``expected``.
    served_under_fault: Any = None
    #: Config of the faulty apps (a wrong key, a dead API URL).
    app_config: dict[str, Any] = field(default_factory=dict)
    #: Whether the request after the fault may use the faulty app. False
    #: when the fault is the app's own config, such as a wrong key.
    reuse_app: bool = True
    #: The run polled after the fault, when it is not ``run_id``.
    followup_run_id: str | None = None
    #: The emulator that serves the run, when it is not the shared one.
    emulator: Emulator | None = None


def prime_cache(app: Flask, run_id: str) -> None:
    """Read the run's status through ``app``, so it keeps the run and its
    presigned URL in its cache."""
    with app.app_context():
        app.extensions["trigger_outputs"].reader.get_run(run_id)


# -- rows -------------------------------------------------------------------


def storage_unavailable_then_ok(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.fail_storage(times=2, status=503),
    )


def storage_failing_past_budget(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.fail_storage(times=3, status=500),
    )


def connection_reset(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.reset_downloads(times=1, keep_bytes=100),
    )


def body_cut_short(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.truncate_downloads(times=1, keep_bytes=100),
    )


def body_cut_short_every_time(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.truncate_downloads(times=3, keep_bytes=100),
    )


def slow_body_once(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.slow_downloads(times=1, delay=1.5, keep_bytes=100),
    )


def slow_body_every_time(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.slow_downloads(times=3, delay=1.5, keep_bytes=100),
    )


def expired_url(env: Environment) -> Scenario:
    run_id = env.create_offloaded()

    def arm(app: Flask) -> None:
        prime_cache(app, run_id)
        env.emulator.faults.expire_urls_now()

    return Scenario(run_id, OUTPUT, arm=arm)


def bad_signature_once(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.bad_signatures(times=1),
    )


def bad_signature_twice(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.bad_signatures(times=2),
    )


def rate_limited(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.rate_limit(times=1, reset_after=0.3),
    )


def api_error_then_ok(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.fail_api(times=1, status=500),
    )


def api_error_past_budget(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.fail_api(times=3, status=500),
    )


def api_down(env: Environment) -> Scenario:
    # A second emulator, started on the dead port only when the fault is
    # cleared, so the request after the fault reaches a live API on the
    # same URL.
    emulator = Emulator(SECRET_KEY, offload_threshold=OFFLOAD_THRESHOLD)
    run_id = emulator.create_run(TASK, output=OUTPUT, offload_output=True)
    port = free_port()

    def clear() -> None:
        server = EmulatorServer(emulator, port=port).start()
        env.cleanups.append(server.stop)

    return Scenario(
        run_id,
        OUTPUT,
        clear=clear,
        app_config={"TRIGGER_API_URL": f"http://127.0.0.1:{port}"},
        emulator=emulator,
    )


def run_not_found(env: Environment) -> Scenario:
    return Scenario(
        "run_" + "0" * 25,
        OUTPUT,
        followup_run_id=env.create_offloaded(),
    )


def wrong_key(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        app_config={"TRIGGER_SECRET_KEY": WRONG_KEY},
        reuse_app=False,
    )


def url_not_signed(env: Environment) -> Scenario:
    return Scenario(
        env.create_offloaded(),
        OUTPUT,
        arm=lambda app: env.emulator.faults.fail_url_signing(times=1),
    )


def invalid_json_packet(env: Environment) -> Scenario:
    run_id = env.emulator.create_run(
        TASK,
        output=StoredPacket('{"site": "garden.example", "pages": [', "application/json"),
        offload_output=True,
    )
    return Scenario(run_id, OUTPUT, clear=lambda: env.replace_output(run_id, OUTPUT))


def invalid_superjson_packet(env: Environment) -> Scenario:
    text = '{"json": {"site": "garden.example"}, "meta": {"values": {"site": ["regexp"]}}}'
    run_id = env.emulator.create_run(
        TASK, output=StoredPacket(text, "application/super+json"), offload_output=True
    )
    return Scenario(run_id, OUTPUT, clear=lambda: env.replace_output(run_id, OUTPUT))


def packet_over_size_limit(env: Environment) -> Scenario:
    run_id = env.create_offloaded(crawl_output(pages=1200))
    return Scenario(run_id, OUTPUT, clear=lambda: env.replace_output(run_id, OUTPUT))


def unknown_content_type(env: Environment) -> Scenario:
    text = json.dumps(OUTPUT)
    run_id = env.emulator.create_run(
        TASK, output=StoredPacket(text, "application/x-unknown"), offload_output=True
    )
    # Like the official SDK, the package returns the text of a packet whose
    # type it does not know, as a string. That string is then cached.
    return Scenario(run_id, text, served_under_fault=text)


def unknown_status(env: Environment) -> Scenario:
    run_id = env.emulator.create_run(
        TASK, status="PAUSED_FOR_REVIEW", output=OUTPUT, offload_output=True
    )
    return Scenario(
        run_id, OUTPUT, clear=lambda: env.emulator.update_run(run_id, status="COMPLETED")
    )


@dataclass(frozen=True)
class Row:
    """A row of the matrix: the fault and the outcomes the package promises."""

    fault: str
    build: Callable[[Environment], Scenario]
    #: The exception ``get_run_output`` raises, or None when it returns the output.
    helper_error: str | None
    #: Status and error code of ``GET /api/crawl`` under the fault.
    status: int
    code: str | None = None


ROWS = [
    Row("storage 503 for the first 2 tries", storage_unavailable_then_ok, None, 200),
    Row("storage 500 on all 3 tries", storage_failing_past_budget, "StorageError", 502,
        "storage_error"),
    Row("connection reset mid-body, once", connection_reset, None, 200),
    Row("body cut short of its Content-Length, once", body_cut_short, None, 200),
    Row("body cut short on all 3 tries", body_cut_short_every_time, "StorageError", 502,
        "storage_error"),
    Row("body stalls 1.5 s (read timeout 0.5 s), once", slow_body_once, None, 200),
    Row("body stalls 1.5 s on all 3 tries", slow_body_every_time, "UpstreamTimeoutError", 504,
        "upstream_timeout"),
    Row("403 expired URL (cached run, URL expired)", expired_url, None, 200),
    Row("403 bad signature, once", bad_signature_once, None, 200),
    Row("403 bad signature, also on the fresh URL", bad_signature_twice, "StorageError", 502,
        "storage_error"),
    Row("API 429 with x-ratelimit-reset in 0.3 s", rate_limited, None, 200),
    Row("API 500 once, then recovery", api_error_then_ok, None, 200),
    Row("API 500 on all 3 tries", api_error_past_budget, "UpstreamUnavailableError", 502,
        "upstream_unavailable"),
    Row("API down (connection refused)", api_down, "UpstreamUnavailableError", 502,
        "upstream_unavailable"),
    Row("run not found", run_not_found, "RunNotFoundError", 404, "run_not_found"),
    Row("wrong secret key (401)", wrong_key, "AuthenticationError", 502,
        "upstream_authentication_failed"),
    Row("completed run without output or URL (signing failed)", url_not_signed,
        "OutputUnavailableError", 502, "output_unavailable"),
    Row("invalid JSON in the packet", invalid_json_packet, "PacketDecodeError", 502,
        "invalid_packet"),
    Row("invalid superjson in the packet", invalid_superjson_packet, "PacketDecodeError", 502,
        "invalid_packet"),
    Row("packet of 92 KB over the 64 KiB limit", packet_over_size_limit, "OutputTooLargeError",
        502, "output_too_large"),
    Row("unknown Content-Type", unknown_content_type, None, 200),
    Row("unknown run status PAUSED_FOR_REVIEW", unknown_status, "RunNotFinishedError", 200),
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def environment() -> Iterator[Environment]:
    emulator = Emulator(SECRET_KEY, offload_threshold=OFFLOAD_THRESHOLD)
    with EmulatorServer(emulator) as server:
        env = Environment(server)
        try:
            yield env
        finally:
            for cleanup in env.cleanups:
                cleanup()


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, list[str]]]:
    """Collect one table line per row and write the table once all rows ran."""
    collected: dict[str, list[str]] = {}
    yield collected

    if len(collected) == len(ROWS):
        header = [
            "fault",
            "get_run_output",
            "GET /api/crawl",
            "API calls",
            "downloads",
            "retry waits (s)",
            "elapsed (s)",
            "next request",
        ]
        table = markdown_table(header, [collected[row.fault] for row in ROWS])
        write_section("fault-matrix", FAULT_MATRIX_INTRO + "\n" + table + "\n")


FAULT_MATRIX_INTRO = """\
Written by `tests/test_fault_matrix.py`. Each row injects one fault through the
emulator's controls, first under `get_run_output(run_id, as_json=True)` and then
under `GET /api/crawl?runId=...` in a fresh app. The app reads with a 0.5 s read
timeout, 3 attempts per call and a 5 s budget per call, and a 64 KiB maximum
output size. The outputs are about 3 KB and offloaded to the emulator's store.

- *API calls* and *downloads* count the requests the emulator received during
  the route's request, including the ones that got the fault.
- *retry waits* are the backoff waits the retry policy asked for, with the
  jitter fixed at half its range. The test records them instead of sleeping,
  so *elapsed* (rounded to 0.5 s) is the time spent in requests and timeouts.
- *next request* is the route's answer once the fault is cleared, from the
  same app (a fresh one after the wrong-key row). "re-downloaded" means the
  failed download was not cached. "from cache" means a download that
  succeeded under the fault was kept.

No row gives a 500, and a 200 response always carries the exact output.
"""


def outcome_of_helper(app: Flask, run_id: str) -> tuple[str | None, Any]:
    with app.app_context():
        try:
            return None, get_run_output(run_id, as_json=True)
        except TriggerOutputsError as error:
            return type(error).__name__, error


@pytest.mark.timeout(60)
@pytest.mark.parametrize("row", ROWS, ids=[row.build.__name__ for row in ROWS])
def test_fault_matrix_row(
    row: Row, environment: Environment, results: dict[str, list[str]]
) -> None:
    emulator = environment.emulator
    emulator.faults.clear()
    scenario = row.build(environment)
    served = (
        scenario.expected if scenario.served_under_fault is None else scenario.served_under_fault
    )

    # The helper, in an app of its own.
    helper_app = environment.make_app(**scenario.app_config)
    instrument(helper_app)
    scenario.arm(helper_app)
    helper_error, helper_value = outcome_of_helper(helper_app, scenario.run_id)
    emulator.faults.clear()

    assert helper_error == row.helper_error, helper_value
    if helper_error is None:
        assert helper_value == served

    # The route, in a fresh app, so nothing the helper cached helps it.
    route_app = environment.make_app(**scenario.app_config)
    waits = instrument(route_app)
    client = route_app.test_client()
    scenario.arm(route_app)
    emulator.stats.reset()
    started = time.monotonic()
    response = client.get(ROUTE, query_string={"runId": scenario.run_id})
    elapsed = time.monotonic() - started
    api_calls = emulator.stats.api_calls["retrieve"]
    downloads = sum(emulator.stats.downloads.values())
    emulator.faults.clear()

    body = response.get_json()
    assert response.status_code != 500, body
    assert response.status_code == row.status, body
    assert isinstance(body, dict)
    if response.status_code >= 400:
        assert body["error"] == row.code
        assert isinstance(body["message"], str)
        assert body["message"]
    elif body["isSuccess"]:
        assert body["output"] == served
    else:
        assert "output" not in body
        assert body["isFinished"] is False

    # The request after the fault, with the fault cleared.
    scenario.clear()
    followup_app = route_app if scenario.reuse_app else environment.make_app()
    source = scenario.emulator or emulator
    downloads_before = sum(source.stats.downloads.values())
    followup = followup_app.test_client().get(
        ROUTE, query_string={"runId": scenario.followup_run_id or scenario.run_id}
    )
    followup_body = followup.get_json()
    downloaded = sum(source.stats.downloads.values()) > downloads_before

    assert followup.status_code == 200, followup_body
    assert followup_body["output"] == scenario.expected
    if response.status_code >= 400:
        assert downloaded, "the request after a failed download was served from the cache"
    next_request = "200, right output, " + ("downloaded" if downloaded else "from cache")

    if row.fault.startswith("API 429"):
        # The wait honours the reset time the server sent.
        assert waits.waits
        assert waits.waits[0] >= 0.2

    route_answer = f"{response.status_code}" + (f" `{row.code}`" if row.code else "")
    if response.status_code == 200 and not body["isSuccess"]:
        route_answer += f", status {body['status']}, no output"
    if helper_error is None:
        helper_answer = "returns the text" if scenario.served_under_fault else "returns the output"
    else:
        helper_answer = f"raises `{helper_error}`"
    results[row.fault] = [
        row.fault,
        helper_answer,
        route_answer,
        str(api_calls),
        str(downloads),
        ", ".join(f"{wait:.2f}" for wait in waits.waits) or "-",
        f"{round(elapsed * 2) / 2:.1f}",
        next_request,
    ]
