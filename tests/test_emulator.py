"""The emulator's API routes, run lifecycle and error responses, over real HTTP."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from flask_trigger_outputs.emulator import (
    Emulator,
    EmulatorServer,
    StoredPacket,
    TaskContext,
)

RUN_ID = re.compile(r"^run_[a-z0-9]+$")
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

#: Fields that RetrieveRunResponse in @trigger.dev/core 4.8.3 requires.
REQUIRED_FIELDS = {
    "id": str,
    "status": str,
    "taskIdentifier": str,
    "isQueued": bool,
    "isExecuting": bool,
    "isWaiting": bool,
    "isCompleted": bool,
    "isSuccess": bool,
    "isFailed": bool,
    "isCancelled": bool,
    "isTest": bool,
    "createdAt": str,
    "updatedAt": str,
    "tags": list,
    "costInCents": int,
    "baseCostInCents": int,
    "durationMs": int,
    "depth": int,
    "triggerFunction": str,
    "relatedRuns": dict,
    "attemptCount": int,
}


class Api:
    """A small authenticated client for the emulator's API."""

    def __init__(self, server: EmulatorServer) -> None:
        self.url = server.url
        self.emulator = server.emulator
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {server.secret_key}"

    def trigger(self, task_id: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.session.post(
            f"{self.url}/api/v1/tasks/{task_id}/trigger", json=body, timeout=5, **kwargs
        )

    def retrieve(self, run_id: str) -> requests.Response:
        return self.session.get(f"{self.url}/api/v3/runs/{run_id}", timeout=5)

    def run_to_end(self, task_id: str, body: Any) -> dict[str, Any]:
        response = self.trigger(task_id, body)
        assert response.status_code == 200, response.text
        run_id = response.json()["id"]
        self.emulator.wait_for_run(run_id, timeout=5)
        run: dict[str, Any] = self.retrieve(run_id).json()
        return run


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator("tr_dev_test_key", offload_threshold=256)) as running:
        yield running


@pytest.fixture
def api(server: EmulatorServer) -> Api:
    return Api(server)


def assert_run_shape(run: dict[str, Any]) -> None:
    for name, kind in REQUIRED_FIELDS.items():
        assert name in run, f"missing {name}"
        assert isinstance(run[name], kind), f"{name} is {type(run[name]).__name__}"
    assert RUN_ID.match(run["id"])
    assert ISO_TIME.match(run["createdAt"])
    assert ISO_TIME.match(run["updatedAt"])
    for name in ("startedAt", "finishedAt"):
        if name in run:
            assert ISO_TIME.match(run[name])
    # Optional fields are left out, never null: the SDK's schema rejects null.
    assert all(value is not None for value in run.values())


def test_trigger_echo_returns_run_id(api: Api) -> None:
    response = api.trigger("echo", {"payload": {"a": 1}})

    assert response.status_code == 200
    body = response.json()
    assert RUN_ID.match(body["id"])
    assert body["isCached"] is False
    assert response.headers["x-trigger-jwt"].count(".") == 2
    assert json.loads(response.headers["x-trigger-jwt-claims"])["scopes"] == [
        f"read:runs:{body['id']}"
    ]


def test_retrieve_completed_inline_output(api: Api) -> None:
    run = api.run_to_end("echo", {"payload": {"a": [1, 2]}})

    assert_run_shape(run)
    assert run["status"] == "COMPLETED"
    assert run["isCompleted"] is True
    assert run["isSuccess"] is True
    assert run["isFailed"] is False
    assert run["output"] == {"a": [1, 2]}
    assert run["payload"] == {"a": [1, 2]}
    assert run["attemptCount"] == 1
    assert run["relatedRuns"] == {"children": []}
    assert "outputPresignedUrl" not in run


def test_retrieve_string_output_is_text(api: Api) -> None:
    api.emulator.register_task("shout", lambda payload, ctx: str(payload["word"]).upper())

    run = api.run_to_end("shout", {"payload": {"word": "hi"}})

    assert run["output"] == "HI"


def test_retrieve_large_output_is_offloaded(api: Api) -> None:
    run = api.run_to_end("echo", {"payload": {"text": "x" * 1000}})

    assert "output" not in run
    assert "payload" not in run
    download = requests.get(run["outputPresignedUrl"], timeout=5)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "application/super+json"
    assert json.loads(download.content) == {"json": {"text": "x" * 1000}}
    payload = requests.get(run["payloadPresignedUrl"], timeout=5)
    assert json.loads(payload.content) == {"text": "x" * 1000}
    assert payload.headers["Content-Type"] == "application/json"


def test_output_at_threshold_is_offloaded(server: EmulatorServer, api: Api) -> None:
    server.emulator.offload_threshold = len("y" * 300)
    server.emulator.register_task("text", lambda payload, ctx: "y" * 300)

    run = api.run_to_end("text", {"payload": None})

    assert "outputPresignedUrl" in run
    assert requests.get(run["outputPresignedUrl"], timeout=5).text == "y" * 300


def test_output_below_threshold_is_inline(server: EmulatorServer, api: Api) -> None:
    server.emulator.offload_threshold = 301
    server.emulator.register_task("text", lambda payload, ctx: "y" * 300)

    run = api.run_to_end("text", {"payload": None})

    assert run["output"] == "y" * 300


def test_stored_packet_is_stored_verbatim(api: Api) -> None:
    data = '{"json":"2024-05-01T00:00:00.000Z","meta":{"values":["Date"]}}'
    api.emulator.register_task(
        "packet", lambda payload, ctx: StoredPacket(data, "application/super+json")
    )

    run = api.run_to_end("packet", {"payload": None})

    assert run["output"] == "2024-05-01T00:00:00.000Z"


def test_failed_run_reports_error(api: Api) -> None:
    def explode(payload: Any, context: TaskContext) -> Any:
        raise LookupError("no page at /missing")

    api.emulator.register_task("explode", explode)

    run = api.run_to_end("explode", {"payload": {}})

    assert_run_shape(run)
    assert run["status"] == "FAILED"
    assert run["isFailed"] is True
    assert run["isSuccess"] is False
    assert run["isCompleted"] is True
    assert run["error"]["name"] == "LookupError"
    assert run["error"]["message"] == "no page at /missing"
    assert "explode" in run["error"]["stackTrace"]
    assert "output" not in run


def test_run_moves_through_statuses(api: Api) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(payload: Any, context: TaskContext) -> Any:
        context.update_metadata(progress=0.5, stage="crawling")
        started.set()
        assert release.wait(5)
        return "done"

    api.emulator.register_task("slow", slow)
    run_id = api.trigger("slow", {"payload": {}}).json()["id"]

    assert started.wait(5)
    running = api.retrieve(run_id).json()
    assert_run_shape(running)
    assert running["status"] == "EXECUTING"
    assert running["isExecuting"] is True
    assert running["isCompleted"] is False
    assert running["metadata"] == {"progress": 0.5, "stage": "crawling"}
    assert "startedAt" in running
    assert "finishedAt" not in running
    assert "output" not in running

    release.set()
    api.emulator.wait_for_run(run_id, timeout=5)
    finished = api.retrieve(run_id).json()
    assert finished["status"] == "COMPLETED"
    assert finished["output"] == "done"
    assert "finishedAt" in finished


def test_runs_wait_for_a_free_worker() -> None:
    release = threading.Event()

    def block(payload: Any, context: TaskContext) -> Any:
        assert release.wait(5)
        return payload

    with EmulatorServer(Emulator(max_workers=1)) as server:
        api = Api(server)
        server.emulator.register_task("block", block)
        first = api.trigger("block", {"payload": 1}).json()["id"]
        second = api.trigger("block", {"payload": 2}).json()["id"]

        queued = api.retrieve(second).json()
        assert queued["status"] == "QUEUED"
        assert queued["isQueued"] is True
        assert queued["attemptCount"] == 0

        release.set()
        assert server.emulator.wait_for_run(first, timeout=5)["output"] == 1
        assert server.emulator.wait_for_run(second, timeout=5)["output"] == 2


def test_set_metadata_replaces(api: Api) -> None:
    def task(payload: Any, context: TaskContext) -> Any:
        context.update_metadata(a=1)
        context.set_metadata({"b": 2})
        return context.metadata

    api.emulator.register_task("task", task)
    run = api.run_to_end("task", {"payload": None})

    assert run["metadata"] == {"b": 2}
    assert run["output"] == {"b": 2}


def test_trigger_options_are_kept(api: Api) -> None:
    body = {
        "payload": {"url": "https://example.com"},
        "options": {
            "tags": ["site", "crawl"],
            "metadata": '{"source":"test"}',
            "metadataType": "application/json",
            "ttl": "10m",
        },
    }

    run = api.run_to_end("echo", body)

    assert run["tags"] == ["crawl", "site"]
    assert run["metadata"] == {"source": "test"}
    assert run["ttl"] == "10m"


def test_trigger_single_tag_string(api: Api) -> None:
    run = api.run_to_end("echo", {"payload": 1, "options": {"tags": "only"}})

    assert run["tags"] == ["only"]


def test_trigger_text_payload_type(api: Api) -> None:
    body = {"payload": "plain words", "options": {"payloadType": "text/plain"}}

    run = api.run_to_end("echo", body)

    assert run["payload"] == "plain words"
    assert run["output"] == "plain words"


def test_trigger_without_payload(api: Api) -> None:
    run = api.run_to_end("echo", {"options": {}})

    assert "payload" not in run
    assert run["output"] is None


def test_idempotency_key_returns_first_run(api: Api) -> None:
    body = {"payload": {"n": 1}, "options": {"idempotencyKey": "crawl-1"}}

    first = api.trigger("echo", body).json()
    second = api.trigger("echo", {**body, "payload": {"n": 2}}).json()

    assert second["id"] == first["id"]
    assert first["isCached"] is False
    assert second["isCached"] is True
    run = api.emulator.wait_for_run(first["id"])
    assert run["idempotencyKey"] == "crawl-1"
    assert run["output"] == {"n": 1}


def test_idempotency_key_is_per_task(api: Api) -> None:
    api.emulator.register_task("other", lambda payload, ctx: payload)
    body = {"payload": 1, "options": {"idempotencyKey": "same"}}

    first = api.trigger("echo", body).json()["id"]
    second = api.trigger("other", body).json()["id"]

    assert first != second


def test_request_idempotency_header_returns_first_run(api: Api) -> None:
    headers = {"x-trigger-request-idempotency-key": "3b4cf3a6-request"}

    first = api.trigger("echo", {"payload": 1}, headers=headers).json()
    again = api.trigger("echo", {"payload": 1}, headers=headers).json()
    other = api.trigger("echo", {"payload": 1}).json()

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert len(api.emulator.runs.all_runs()) == 2


def test_store_payload_resolves_uploaded_packet(api: Api) -> None:
    upload = api.session.put(f"{api.url}/api/v2/packets/uploads/crawl.json", timeout=5).json()
    assert upload["storagePath"] == "uploads/crawl.json"
    put = requests.put(
        upload["presignedUrl"],
        data=b'{"json":{"site":"https://example.com"}}',
        headers={"Content-Type": "application/super+json"},
        timeout=5,
    )
    assert put.status_code == 200

    body = {"payload": upload["storagePath"], "options": {"payloadType": "application/store"}}
    run = api.run_to_end("echo", body)

    assert run["output"] == {"site": "https://example.com"}
    assert "payload" not in run
    download = requests.get(run["payloadPresignedUrl"], timeout=5)
    assert download.content == b'{"json":{"site":"https://example.com"}}'
    assert download.headers["Content-Type"] == "application/super+json"


def test_store_payload_missing_object_fails_run(api: Api) -> None:
    body = {"payload": "uploads/none.json", "options": {"payloadType": "application/store"}}

    run = api.run_to_end("echo", body)

    assert run["status"] == "FAILED"
    assert run["error"]["name"] == "KeyError"


def test_download_url_route(api: Api) -> None:
    api.emulator.store.put("exports/a.json", b'{"a":1}', "application/json")

    response = api.session.get(f"{api.url}/api/v1/packets/exports/a.json", timeout=5)

    assert response.status_code == 200
    assert set(response.json()) == {"presignedUrl"}
    assert requests.get(response.json()["presignedUrl"], timeout=5).json() == {"a": 1}


def test_large_trigger_payload_is_offloaded(api: Api) -> None:
    run = api.run_to_end("echo", {"payload": {"blob": "z" * 500}})

    assert "payload" not in run
    payload = requests.get(run["payloadPresignedUrl"], timeout=5)
    assert payload.json() == {"blob": "z" * 500}


# -- errors --------------------------------------------------------------


def test_missing_key_is_401(server: EmulatorServer) -> None:
    response = requests.get(f"{server.url}/api/v3/runs/run_abc", timeout=5)

    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or Missing API key"}


def test_wrong_key_is_401(server: EmulatorServer) -> None:
    headers = {"Authorization": "Bearer tr_dev_wrong"}

    response = requests.post(
        f"{server.url}/api/v1/tasks/echo/trigger", json={}, headers=headers, timeout=5
    )

    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or Missing API key"}


def test_non_bearer_scheme_is_401(server: EmulatorServer) -> None:
    headers = {"Authorization": f"Basic {server.secret_key}"}

    response = requests.get(f"{server.url}/api/v3/runs/run_abc", headers=headers, timeout=5)

    assert response.status_code == 401


def test_unknown_run_is_404(api: Api) -> None:
    response = api.retrieve("run_doesnotexist")

    assert response.status_code == 404
    assert response.json() == {"error": "Run not found"}


def test_unknown_task_is_404(api: Api) -> None:
    response = api.trigger("no-such-task", {"payload": 1})

    assert response.status_code == 404
    assert response.json() == {"error": "Task not found"}


def test_malformed_json_is_400(api: Api) -> None:
    response = api.session.post(
        f"{api.url}/api/v1/tasks/echo/trigger",
        data=b'{"payload": ',
        headers={"Content-Type": "application/json"},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json() == {"error": "Invalid JSON"}


def test_empty_body_is_400(api: Api) -> None:
    response = api.session.post(f"{api.url}/api/v1/tasks/echo/trigger", data=b"", timeout=5)

    assert response.status_code == 400
    assert response.json() == {"error": "Request body is empty"}


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"options": []},
        {"options": {"tags": [1]}},
        {"options": {"idempotencyKey": 5}},
        {"payload": {"a": 1}, "options": {"payloadType": "text/plain"}},
        {"options": {"metadata": "[1]"}},
        {"options": {"metadata": "{not json"}},
    ],
)
def test_invalid_trigger_body_is_400(api: Api, body: Any) -> None:
    response = api.trigger("echo", body)

    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


def test_payload_over_limit_is_413(api: Api) -> None:
    body = {"payload": "p" * (3 * 1024 * 1024)}

    response = api.trigger("echo", body)

    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large"}
    assert api.emulator.runs.all_runs() == []


def test_chunked_trigger_body_is_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"payload": 1}'

    response = api.session.post(f"{api.url}/api/v1/tasks/echo/trigger", data=chunks(), timeout=5)

    assert response.status_code == 413


def test_unknown_route_is_404_json(api: Api) -> None:
    response = api.session.get(f"{api.url}/api/v1/nothing", timeout=5)

    assert response.status_code == 404
    assert response.json() == {"error": "Not found"}


def test_wrong_method_is_405_json(api: Api) -> None:
    response = api.session.delete(f"{api.url}/api/v3/runs/run_abc", timeout=5)

    assert response.status_code == 405
    assert response.json() == {"error": "Method not allowed"}


def test_invalid_stored_output_is_500_without_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    run_id = api.emulator.create_run(output=StoredPacket("{broken", "application/json"))

    response = api.retrieve(run_id)

    assert response.status_code == 500
    assert response.json() == {"error": "Internal Server Error"}
    assert "Traceback" not in response.text
    assert "failed to handle a request" in caplog.text


# -- create_run and wait_for_run ------------------------------------------


@pytest.mark.parametrize(
    ("status", "flags"),
    [
        ("QUEUED", {"isQueued"}),
        ("DELAYED", {"isQueued"}),
        ("PENDING_VERSION", {"isQueued"}),
        ("DEQUEUED", {"isExecuting"}),
        ("EXECUTING", {"isExecuting"}),
        ("WAITING", {"isWaiting"}),
        ("COMPLETED", {"isCompleted", "isSuccess"}),
        ("FAILED", {"isCompleted", "isFailed"}),
        ("CRASHED", {"isCompleted", "isFailed"}),
        ("SYSTEM_FAILURE", {"isCompleted", "isFailed"}),
        ("EXPIRED", {"isCompleted", "isFailed"}),
        ("TIMED_OUT", {"isCompleted", "isFailed"}),
        ("CANCELED", {"isCancelled"}),
        ("SOME_FUTURE_STATUS", set()),
    ],
)
def test_create_run_status_flags(api: Api, status: str, flags: set[str]) -> None:
    run_id = api.emulator.create_run("site-crawl", status=status)

    run = api.retrieve(run_id).json()

    assert run["status"] == status
    flag_names = {
        "isQueued",
        "isExecuting",
        "isWaiting",
        "isCompleted",
        "isSuccess",
        "isFailed",
        "isCancelled",
    }
    assert {name for name in flag_names if run[name]} == flags


def test_create_run_completed_without_output(api: Api) -> None:
    run_id = api.emulator.create_run(status="COMPLETED")

    run = api.retrieve(run_id).json()

    assert run["isSuccess"] is True
    assert "output" not in run
    assert "outputPresignedUrl" not in run


def test_create_run_offloaded_output(api: Api) -> None:
    run_id = api.emulator.create_run(output={"small": True}, offload_output=True)

    run = api.retrieve(run_id).json()

    assert "output" not in run
    assert requests.get(run["outputPresignedUrl"], timeout=5).json() == {"json": {"small": True}}


def test_create_run_output_hidden_until_completed(api: Api) -> None:
    run_id = api.emulator.create_run(status="EXECUTING", output="later")

    assert "output" not in api.retrieve(run_id).json()
    api.emulator.update_run(run_id, status="COMPLETED")
    assert api.retrieve(run_id).json()["output"] == "later"


def test_create_run_failed_with_error(api: Api) -> None:
    error = {"name": "TimeoutError", "message": "crawl took too long"}
    run_id = api.emulator.create_run(status="FAILED", error=error, tags=["b", "a"])

    run = api.retrieve(run_id).json()

    assert run["error"] == error
    assert run["tags"] == ["a", "b"]


def test_wait_for_run_times_out(server: EmulatorServer) -> None:
    run_id = server.emulator.create_run(status="EXECUTING")

    with pytest.raises(TimeoutError, match=run_id):
        server.emulator.wait_for_run(run_id, timeout=0.05)


def test_python_trigger_runs_task(server: EmulatorServer) -> None:
    run_id = server.emulator.trigger("echo", {"from": "python"}, tags=["x"])

    run = server.emulator.wait_for_run(run_id)

    assert run["output"] == {"from": "python"}
    assert run["tags"] == ["x"]


def test_get_run_unknown_raises_key_error(server: EmulatorServer) -> None:
    with pytest.raises(KeyError):
        server.emulator.get_run("run_missing")


def test_output_over_max_size_fails_run() -> None:
    with EmulatorServer(Emulator(max_output_size=100)) as server:
        server.emulator.register_task("big", lambda payload, ctx: "b" * 101)

        run = server.emulator.wait_for_run(server.emulator.trigger("big"))

    assert run["status"] == "FAILED"
    assert "over the limit of 100 bytes" in run["error"]["message"]


# -- stats ---------------------------------------------------------------


def test_stats_count_routes_and_log_requests(api: Api) -> None:
    run = api.run_to_end("echo", {"payload": {"big": "q" * 1000}})
    requests.get(run["outputPresignedUrl"], timeout=5)

    stats = api.emulator.stats
    assert stats.api_calls["trigger"] == 1
    assert stats.api_calls["retrieve"] == 1
    assert stats.downloads[f"{run['id']}/output.json"] == 1
    storage = stats.storage_requests()
    assert len(storage) == 1
    assert storage[0].status == 200
    assert "authorization" not in storage[0].headers
    api_requests = [r for r in stats.requests if r.kind == "api"]
    assert all(r.headers["authorization"].startswith("Bearer ") for r in api_requests)

    stats.reset()
    assert stats.api_calls == {}
    assert stats.requests == []
