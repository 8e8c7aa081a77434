"""Tests for the Trigger.dev REST client, against the emulator."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from clocks import FakeTime

from flask_trigger_outputs.client import TRIGGER_VERSION, TriggerClient
from flask_trigger_outputs.emulator import EmulatorServer
from flask_trigger_outputs.errors import (
    ApiError,
    AuthenticationError,
    InvalidRunIdError,
    PayloadTooLargeError,
    RateLimitError,
    RunNotFoundError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

IDEMPOTENCY_HEADER = "x-trigger-request-idempotency-key"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_client(server: EmulatorServer, fake_time: FakeTime, **options: Any) -> TriggerClient:
    policy = options.pop("retry_policy", None) or fake_time.policy()
    options.setdefault("connect_timeout", 2.0)
    options.setdefault("read_timeout", 5.0)
    return TriggerClient(
        options.pop("secret_key", server.secret_key),
        api_url=server.url,
        retry_policy=policy,
        **options,
    )


@pytest.fixture
def client(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> TriggerClient:
    return make_client(trigger_emulator, fake_time)


def api_requests(server: EmulatorServer, route: str) -> list[Any]:
    return [r for r in server.emulator.stats.requests if r.route == route]


def host(server: EmulatorServer) -> str:
    return server.url.removeprefix("http://")


def test_retrieve_run_returns_run(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    run_id = trigger_emulator.emulator.create_run(
        "site-crawl", output={"pages": 3}, tags=["site:example"]
    )

    run = client.retrieve_run(run_id)

    assert run["id"] == run_id
    assert run["status"] == "COMPLETED"
    assert run["taskIdentifier"] == "site-crawl"
    assert run["output"] == {"pages": 3}


def test_retrieve_run_sends_sdk_headers(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=1)

    client.retrieve_run(run_id)

    [request] = api_requests(trigger_emulator, "retrieve")
    assert request.headers["authorization"] == f"Bearer {trigger_emulator.secret_key}"
    assert request.headers["trigger-version"] == TRIGGER_VERSION
    assert request.headers["x-trigger-source"] == "sdk"
    assert request.headers[IDEMPOTENCY_HEADER]
    assert "x-trigger-branch" not in request.headers


def test_retrieve_run_sends_preview_branch(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    client = make_client(trigger_emulator, fake_time, branch="feature-login")
    run_id = trigger_emulator.emulator.create_run(output=1)

    client.retrieve_run(run_id)

    [request] = api_requests(trigger_emulator, "retrieve")
    assert request.headers["x-trigger-branch"] == "feature-login"


def test_retrieve_run_invalid_id_sends_nothing(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    with pytest.raises(InvalidRunIdError):
        client.retrieve_run("run_abc/../../v1/tasks")

    assert trigger_emulator.emulator.stats.requests == []


def test_retrieve_run_not_found(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    with pytest.raises(RunNotFoundError) as info:
        client.retrieve_run("run_doesnotexist")

    assert info.value.message == (
        "Trigger.dev has no run 'run_doesnotexist' in the environment of this secret key."
        " Check the run id and that the key belongs to the environment that started the run."
    )
    assert info.value.status_code == 404
    assert info.value.run_id == "run_doesnotexist"
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1


def test_retrieve_run_bad_key(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    client = make_client(trigger_emulator, fake_time, secret_key="tr_dev_wrongkey123")

    with pytest.raises(AuthenticationError) as info:
        client.retrieve_run("run_abc")

    assert info.value.message == (
        "Trigger.dev rejected the secret key (HTTP 401) while retrieving run 'run_abc'."
        " Check that TRIGGER_SECRET_KEY is a secret API key of the project environment"
        " you mean to use."
    )
    assert "tr_dev_wrongkey123" not in str(info.value)
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1
    assert fake_time.sleeps == []


def test_retrieve_run_retries_server_errors(
    trigger_emulator: EmulatorServer, client: TriggerClient, fake_time: FakeTime
) -> None:
    run_id = trigger_emulator.emulator.create_run(output="done")
    trigger_emulator.emulator.faults.fail_api(times=2, status=502)

    run = client.retrieve_run(run_id)

    assert run["output"] == "done"
    attempts = api_requests(trigger_emulator, "retrieve")
    assert [r.status for r in attempts] == [502, 502, 200]
    assert len({r.headers[IDEMPOTENCY_HEADER] for r in attempts}) == 1
    # Full jitter with random() fixed at 0.5: half of 1 s, then of 1.6 s.
    assert fake_time.sleeps == [0.5, 0.8]


def test_calls_use_distinct_idempotency_keys(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=1)

    client.retrieve_run(run_id)
    client.retrieve_run(run_id)

    keys = {r.headers[IDEMPOTENCY_HEADER] for r in api_requests(trigger_emulator, "retrieve")}
    assert len(keys) == 2


def test_retrieve_run_gives_up_on_server_errors(
    trigger_emulator: EmulatorServer, client: TriggerClient, fake_time: FakeTime
) -> None:
    trigger_emulator.emulator.faults.fail_api(times=10, status=503)

    with pytest.raises(UpstreamUnavailableError) as info:
        client.retrieve_run("run_abc")

    assert info.value.message == (
        "Trigger.dev kept failing (HTTP 503) while retrieving run 'run_abc', after"
        " 5 attempts in 4.6 s. Try again later."
    )
    assert info.value.status_code == 503
    assert info.value.run_id == "run_abc"
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 5
    assert len(fake_time.sleeps) == 4


def test_retrieve_run_stops_at_max_time(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    client = make_client(
        trigger_emulator, fake_time, retry_policy=fake_time.policy(max_tries=100, max_time=2.0)
    )
    trigger_emulator.emulator.faults.fail_api(times=100, status=500)

    with pytest.raises(UpstreamUnavailableError):
        client.retrieve_run("run_abc")

    # Waits of 0.5 and 0.8 s, then the 0.7 s left in the budget.
    assert fake_time.sleeps == pytest.approx([0.5, 0.8, 0.7])
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 4


def test_should_retry_false_stops_retries(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    trigger_emulator.emulator.faults.fail_api(times=5, status=500, should_retry=False)

    with pytest.raises(UpstreamUnavailableError) as info:
        client.retrieve_run("run_abc")

    assert info.value.message == (
        "Trigger.dev failed with HTTP 500 while retrieving run 'run_abc' and asked not to"
        " retry: 'Emulated failure with status 500'. Try again later."
    )
    assert info.value.status_code == 500
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1


def test_should_retry_true_retries_client_error(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=1)
    trigger_emulator.emulator.faults.fail_api(times=1, status=400, should_retry=True)

    client.retrieve_run(run_id)

    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 2


@pytest.mark.parametrize("status", [400, 422])
def test_client_errors_are_not_retried(
    trigger_emulator: EmulatorServer, client: TriggerClient, status: int
) -> None:
    trigger_emulator.emulator.faults.fail_api(times=5, status=status)

    with pytest.raises(ApiError) as info:
        client.retrieve_run("run_abc")

    assert info.value.message == (
        f"Trigger.dev rejected the request with HTTP {status} while retrieving run"
        f" 'run_abc': 'Emulated failure with status {status}'."
    )
    assert info.value.status_code == status
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1


def test_rate_limit_waits_until_reset(
    trigger_emulator: EmulatorServer, client: TriggerClient, fake_time: FakeTime
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=1)
    trigger_emulator.emulator.faults.rate_limit(times=1, reset_after=20.0)

    client.retrieve_run(run_id)

    # Until the reset (20 s minus the few milliseconds the test took), plus
    # half of the 1 s jitter range.
    [wait] = fake_time.sleeps
    assert 20.0 < wait <= 20.5
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 2


def test_rate_limit_reset_beyond_budget_gives_up(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    client = make_client(
        trigger_emulator, fake_time, retry_policy=fake_time.policy(max_tries=5, max_time=3.0)
    )
    trigger_emulator.emulator.faults.rate_limit(times=5, reset_after=60.0)

    with pytest.raises(RateLimitError) as info:
        client.retrieve_run("run_abc")

    # Waiting the 3 s left could not reach the reset 60 s away.
    assert fake_time.sleeps == []
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1
    assert info.value.status_code == 429
    assert info.value.message == (
        "Trigger.dev rate-limited the API calls (HTTP 429) while retrieving run 'run_abc',"
        " and the limit resets in 60 s, after the retry time budget ends, so the call gave"
        " up after 1 attempt in 0.0 s. Try again after the reset or lower the request rate."
    )


def test_rate_limit_reset_after_spent_budget_gives_up(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    client = make_client(
        trigger_emulator, fake_time, retry_policy=fake_time.policy(max_tries=5, max_time=30.0)
    )
    run_id = trigger_emulator.emulator.create_run(output=1)
    trigger_emulator.emulator.faults.fail_api(times=1, status=500)
    trigger_emulator.emulator.faults.rate_limit(times=1, reset_after=29.9)

    with pytest.raises(RateLimitError) as info:
        client.retrieve_run(run_id)

    # The first wait (0.5 s) leaves 29.5 s of the budget, less than the
    # 29.9 s until the reset.
    assert fake_time.sleeps == [0.5]
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 2
    assert "the limit resets in 30 s" in info.value.message


def test_connection_refused_is_retried(fake_time: FakeTime) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    client = TriggerClient(
        "tr_dev_key",
        api_url=f"http://127.0.0.1:{port}",
        retry_policy=fake_time.policy(max_tries=3),
    )

    with pytest.raises(UpstreamUnavailableError) as info:
        client.retrieve_run("run_abc")

    assert info.value.message == (
        f"Could not reach Trigger.dev at 127.0.0.1:{port} while retrieving run 'run_abc'"
        " (ConnectionError), after 3 attempts in 1.3 s. Check TRIGGER_API_URL and the"
        " network connection."
    )
    assert info.value.status_code is None
    assert len(fake_time.sleeps) == 2


def test_read_timeout(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    client = make_client(
        trigger_emulator,
        fake_time,
        read_timeout=0.1,
        retry_policy=fake_time.policy(max_tries=2),
    )
    trigger_emulator.emulator.faults.latency(api=0.5)

    with pytest.raises(UpstreamTimeoutError) as info:
        client.retrieve_run("run_abc")

    assert info.value.message == (
        "Trigger.dev did not respond in time while retrieving run 'run_abc', after"
        " 2 attempts in 0.5 s. Try again later."
    )
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 2


def test_retries_are_logged(
    trigger_emulator: EmulatorServer, client: TriggerClient, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = trigger_emulator.emulator.create_run(output=1)
    trigger_emulator.emulator.faults.fail_api(times=1, status=500)

    with caplog.at_level(logging.WARNING, logger="flask_trigger_outputs"):
        client.retrieve_run(run_id)

    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"Retrieving run {run_id!r} failed (HTTP 500) on attempt 1 of 5; retrying in 0.50 s."
    )
    assert record.trigger_run_id == run_id  # type: ignore[attr-defined]
    assert trigger_emulator.secret_key not in caplog.text


def test_client_repr_hides_key(client: TriggerClient, trigger_emulator: EmulatorServer) -> None:
    assert trigger_emulator.secret_key not in repr(client)
    assert trigger_emulator.secret_key not in repr(client._session.auth)


def test_trigger_small_payload(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    run_id = client.trigger(
        "echo",
        {"url": "https://example.com", "depth": 2},
        tags=["site:example"],
        metadata={"source": "test"},
    )

    run = trigger_emulator.emulator.wait_for_run(run_id)
    assert run["output"] == {"url": "https://example.com", "depth": 2}
    assert run["tags"] == ["site:example"]
    assert run["metadata"] == {"source": "test"}
    [request] = api_requests(trigger_emulator, "trigger")
    assert request.path == "/api/v1/tasks/echo/trigger"
    assert trigger_emulator.emulator.stats.api_calls["upload_url"] == 0


def test_trigger_large_payload_is_uploaded(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    client = make_client(trigger_emulator, fake_time, offload_threshold=4096)
    payload = {"pages": [f"https://example.com/{i}" for i in range(500)]}

    run_id = client.trigger("echo", payload)

    run = trigger_emulator.emulator.wait_for_run(run_id)
    assert run["output"] == payload
    [presign] = api_requests(trigger_emulator, "upload_url")
    assert presign.method == "PUT"
    assert presign.path.startswith("/api/v2/packets/trigger/echo/")
    assert presign.path.endswith("/payload.json")
    [upload] = trigger_emulator.emulator.stats.storage_requests()
    assert upload.method == "PUT"
    assert upload.headers["content-type"] == "application/super+json"
    assert "authorization" not in upload.headers
    [key] = trigger_emulator.emulator.stats.uploads
    assert key == presign.path.removeprefix("/api/v2/packets/")


def test_trigger_large_text_payload(trigger_emulator: EmulatorServer, fake_time: FakeTime) -> None:
    client = make_client(trigger_emulator, fake_time, offload_threshold=1000)
    text = "word " * 1000

    run_id = client.trigger("echo", text)

    run = trigger_emulator.emulator.wait_for_run(run_id)
    assert run["output"] == text
    [upload] = trigger_emulator.emulator.stats.storage_requests()
    assert upload.headers["content-type"] == "text/plain"
    assert upload.path.endswith("/payload.txt")


def test_trigger_payload_at_threshold_is_uploaded(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    text = "x" * 2000
    at_threshold = make_client(trigger_emulator, fake_time, offload_threshold=2000)
    below_threshold = make_client(trigger_emulator, fake_time, offload_threshold=2001)

    at_threshold.trigger("echo", text)
    below_threshold.trigger("echo", text)

    assert trigger_emulator.emulator.stats.api_calls["upload_url"] == 1


def test_trigger_payload_too_large_sends_nothing(
    trigger_emulator: EmulatorServer, fake_time: FakeTime
) -> None:
    client = make_client(trigger_emulator, fake_time, max_payload_size=10_000)
    text = "é" * 5001  # two bytes each in UTF-8

    with pytest.raises(PayloadTooLargeError) as info:
        client.trigger("echo", text)

    assert info.value.size == 10_002
    assert info.value.limit == 10_000
    assert info.value.task_id == "echo"
    assert info.value.message == (
        "The payload for task 'echo' is 10002 bytes once serialized, larger than the limit"
        " of 10000 bytes. Send a smaller payload, for example a reference to data stored"
        " elsewhere."
    )
    assert trigger_emulator.emulator.stats.requests == []


def test_trigger_default_limit_is_3_mb(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    with pytest.raises(PayloadTooLargeError) as info:
        client.trigger("echo", "x" * (3 * 1024 * 1024 + 1))

    assert info.value.limit == 3 * 1024 * 1024
    assert trigger_emulator.emulator.stats.requests == []


def test_trigger_retry_starts_one_run(
    trigger_emulator: EmulatorServer, client: TriggerClient
) -> None:
    trigger_emulator.emulator.faults.fail_api(times=1, status=500, path_prefix="/api/v1/tasks/")

    run_id = client.trigger("echo", {"a": 1})

    attempts = api_requests(trigger_emulator, "trigger")
    assert [r.status for r in attempts] == [500, 200]
    assert attempts[0].headers[IDEMPOTENCY_HEADER] == attempts[1].headers[IDEMPOTENCY_HEADER]
    assert trigger_emulator.emulator.wait_for_run(run_id)["output"] == {"a": 1}


def test_trigger_idempotency_key_returns_same_run(client: TriggerClient) -> None:
    first = client.trigger("echo", {"a": 1}, idempotency_key="crawl-example.com")
    second = client.trigger("echo", {"a": 2}, idempotency_key="crawl-example.com")

    assert first == second


def test_trigger_sends_options(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    run_id = client.trigger("echo", {"a": 1}, ttl="10m", max_attempts=3)

    assert trigger_emulator.emulator.runs.get(run_id).ttl == "10m"


def test_trigger_unknown_task(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    with pytest.raises(ApiError) as info:
        client.trigger("no-such-task", {"a": 1})

    assert info.value.message == (
        "Trigger.dev rejected the request with HTTP 404 while triggering task"
        " 'no-such-task': 'Task not found'."
    )
    assert info.value.task_id == "no-such-task"


def test_trigger_quotes_task_id(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    with pytest.raises(ApiError):
        client.trigger("a/b?c", {"a": 1})

    # The "?" reaches the server percent-encoded, so the task id cannot add
    # a query. The emulator routes on the decoded path, where the encoded
    # "/" splits the segment again, hence the 404.
    [request] = trigger_emulator.emulator.stats.requests
    assert request.query == ""
    assert request.status == 404


@pytest.mark.parametrize("task_id", ["", "a b", "x" * 129, "t\u00e2che"])
def test_trigger_rejects_invalid_task_id(
    trigger_emulator: EmulatorServer, client: TriggerClient, task_id: str
) -> None:
    with pytest.raises(ValueError, match="Invalid task id"):
        client.trigger(task_id, {})

    assert trigger_emulator.emulator.stats.requests == []


def test_presign_download(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    url = client.presign_download("proj/run_abc/output.json")

    assert url.startswith(f"{trigger_emulator.url}/storage/packets/proj/run_abc/output.json?")


def test_presign_rejects_path_traversal(client: TriggerClient) -> None:
    with pytest.raises(ValueError, match="Invalid packet filename"):
        client.presign_download("../runs/run_abc")


def test_client_requires_secret_key() -> None:
    with pytest.raises(ValueError, match="TRIGGER_SECRET_KEY"):
        TriggerClient("  ")


def test_trigger_body_shape(trigger_emulator: EmulatorServer, client: TriggerClient) -> None:
    run_id = client.trigger("echo", {"when": "now"}, tags=["a"], idempotency_key="k-1")

    record = trigger_emulator.emulator.runs.get(run_id)
    assert record.payload.data_type == "application/super+json"
    assert json.loads(record.payload.data) == {"json": {"when": "now"}}
    assert record.tags == ["a"]
