"""Tests for the six JSON routes, against the emulator over real HTTP."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from extension_tasks import LARGE_OUTPUT_SIZE, ROUTE_TASKS, make_app
from flask import Flask, abort, request
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

from flask_trigger_outputs.emulator import EmulatorServer
from flask_trigger_outputs.extension import get_state
from flask_trigger_outputs.runs import Run

CLIENT_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def app(server: EmulatorServer) -> Iterator[Flask]:
    app = make_app(server)
    yield app
    get_state(app).close()


def post_json(client: FlaskClient, path: str, body: Any) -> Any:
    return client.post(path, data=json.dumps(body), headers=CLIENT_HEADERS)


def start_and_wait(client: FlaskClient, server: EmulatorServer, path: str, body: Any) -> str:
    response = post_json(client, path, body)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    run_id: str = body.get("runId") or body["extractionRunId"]
    server.emulator.wait_for_run(run_id)
    return run_id


# -- POST ------------------------------------------------------------------


@pytest.mark.parametrize(("path", "task_id"), sorted(ROUTE_TASKS.items()))
def test_post_starts_route_task(
    client: FlaskClient, server: EmulatorServer, path: str, task_id: str
) -> None:
    response = post_json(client, path, {"url": "https://example.com"})

    assert response.status_code == 202
    body = response.get_json()
    assert body["taskIdentifier"] == task_id
    assert body["statusUrl"] == f"{path}?runId={body['runId']}"
    assert response.headers["Location"] == body["statusUrl"]
    assert server.emulator.wait_for_run(body["runId"])["taskIdentifier"] == task_id


def test_post_sends_body_as_payload(client: FlaskClient, server: EmulatorServer) -> None:
    payload = {"url": "https://example.com", "echo": {"depth": 2, "tags": ["a", "b"]}}

    run_id = start_and_wait(client, server, "/api/crawl", payload)

    assert server.emulator.get_run(run_id)["payload"] == payload


def test_post_large_payload_offloaded(client: FlaskClient, server: EmulatorServer) -> None:
    echo = "y" * (200 * 1024)

    run_id = start_and_wait(client, server, "/api/site-audit", {"echo": echo})
    body = client.get(f"/api/site-audit?runId={run_id}").get_json()

    assert body["output"]["echo"] == echo
    assert sum(server.emulator.stats.uploads.values()) == 1


def test_post_invalid_json(client: FlaskClient) -> None:
    response = client.post("/api/crawl", data='{"url": ', headers=CLIENT_HEADERS)

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "field": "body",
        "message": "The request body is not valid JSON: Expecting value at line 1 column 9.",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "[1, 2]",
            "The request body must be a JSON object with the task's payload, got a JSON array.",
        ),
        (
            '"text"',
            "The request body must be a JSON object with the task's payload, got a JSON string.",
        ),
        ('{"a": NaN}', "The request body is not valid JSON: NaN is not a JSON value."),
        (b'{"a": "\xff"}', "The request body is not valid UTF-8 (invalid byte at offset 7)."),
        (
            '{"a": "\\ud800"}',
            "The request body contains an unpaired surrogate escape such as \\ud800,"
            " which is not valid Unicode.",
        ),
    ],
)
def test_post_rejects_body(client: FlaskClient, data: str | bytes, message: str) -> None:
    response = client.post("/api/audit", data=data, headers=CLIENT_HEADERS)

    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "field": "body", "message": message}


def test_post_empty_body_starts_task_with_defaults(
    client: FlaskClient, server: EmulatorServer
) -> None:
    response = client.post("/api/audit", data="", headers=CLIENT_HEADERS)

    assert response.status_code == 202
    run_id = response.get_json()["runId"]
    assert server.emulator.wait_for_run(run_id)["payload"] == {}


def test_post_deeply_nested_body(client: FlaskClient) -> None:
    response = client.post("/api/audit", data="[" * 100_000, headers=CLIENT_HEADERS)

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


def test_post_requires_json_content_type(client: FlaskClient, server: EmulatorServer) -> None:
    response = client.post("/api/crawl", data="{}", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    assert response.get_json() == {
        "error": "unsupported_media_type",
        "field": "body",
        "message": "The request body must be JSON with Content-Type application/json,"
        " got text/plain.",
    }
    assert server.emulator.stats.api_calls["trigger"] == 0


def test_post_body_over_limit(client: FlaskClient, server: EmulatorServer) -> None:
    data = json.dumps({"blob": "z" * (3 * 1024 * 1024)})

    response = client.post("/api/crawl", data=data, headers=CLIENT_HEADERS)

    assert response.status_code == 413
    assert response.get_json() == {
        "error": "payload_too_large",
        "message": f"The request body is {len(data)} bytes, over the 3145728-byte limit"
        " of a trigger payload.",
    }
    assert server.emulator.stats.api_calls["trigger"] == 0


def test_post_body_without_length_over_limit(server: EmulatorServer) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE=1000)
    builder = EnvironBuilder(
        path="/api/crawl",
        method="POST",
        data=json.dumps({"blob": "z" * 2000}),
        headers={**CLIENT_HEADERS, "Transfer-Encoding": "chunked"},
    )
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True

    # The test client rebuilds the environ, so the app is called directly.
    body, status, _headers = run_wsgi_app(app, environ)

    assert status == "413 REQUEST ENTITY TOO LARGE"
    assert json.loads(b"".join(body))["message"] == (
        "The request body is larger than the 1000-byte limit of a trigger payload."
    )


def test_post_app_max_content_length_json(server: EmulatorServer) -> None:
    app = make_app(server, MAX_CONTENT_LENGTH=100)

    response = post_json(app.test_client(), "/api/crawl", {"blob": "z" * 200})

    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"


def test_post_status_route_not_allowed(client: FlaskClient) -> None:
    response = post_json(client, "/api/crawl/status", {})

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.get_json()["error"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/api/crawl", "/api/content/analyze"])
def test_delete_not_allowed(client: FlaskClient, path: str) -> None:
    response = client.delete(path)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert response.get_json()["error"] == "method_not_allowed"


# -- GET -------------------------------------------------------------------


def test_get_completed_run(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = start_and_wait(client, server, "/api/crawl", {"url": "https://example.com"})

    response = client.get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["runId"] == run_id
    assert body["taskIdentifier"] == "site-crawl"
    assert body["status"] == "COMPLETED"
    assert body["isSuccess"] is True
    assert body["isFinished"] is True
    assert body["isFailed"] is False
    assert body["metadata"] == {"progress": 1.0, "step": "done"}
    assert body["output"] == {"task": "site-crawl", "url": "https://example.com"}
    assert body["outputOffloaded"] is False
    assert body["outputSize"] == len(
        json.dumps(body["output"], separators=(",", ":")).encode("utf-8")
    )
    assert body["error"] is None
    assert body["finishedAt"] is not None


def test_get_offloaded_output(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = start_and_wait(client, server, "/api/ai-strategy", {"large": True})

    body = client.get(f"/api/ai-strategy?runId={run_id}").get_json()

    assert body["outputOffloaded"] is True
    assert body["output"]["html"] == "x" * LARGE_OUTPUT_SIZE
    assert body["outputSize"] > LARGE_OUTPUT_SIZE
    assert sum(server.emulator.stats.downloads.values()) == 1


def test_get_output_json_is_compact(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = start_and_wait(client, server, "/api/ai-strategy", {"large": True})
    first = client.get(f"/api/ai-strategy?runId={run_id}")
    cached = client.get(f"/api/ai-strategy?runId={run_id}")
    status = client.get("/api/ai-strategy?runId=run_unknown000")

    for response in (first, cached, status):
        head = response.get_data()[:200]
        assert b'": ' not in head
        assert b'", "' not in head
    assert first.get_data() == cached.get_data()


def test_get_status_route_skips_download(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = start_and_wait(client, server, "/api/crawl", {"large": True})

    body = client.get(f"/api/crawl/status?runId={run_id}").get_json()

    assert "output" not in body
    assert body["status"] == "COMPLETED"
    assert body["metadata"]["progress"] == 1.0
    assert body["outputOffloaded"] is True
    assert body["outputSize"] is None
    assert sum(server.emulator.stats.downloads.values()) == 0


def test_get_executing_run(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run(
        "site-crawl", status="EXECUTING", metadata={"progress": 0.4}
    )

    body = client.get(f"/api/crawl?runId={run_id}").get_json()

    assert body["status"] == "EXECUTING"
    assert body["isExecuting"] is True
    assert body["isFinished"] is False
    assert body["metadata"] == {"progress": 0.4}
    assert "output" not in body
    assert body["outputSize"] is None
    assert body["outputOffloaded"] is None


def test_get_unknown_status(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run("site-audit", status="HIBERNATING")

    response = client.get(f"/api/site-audit?runId={run_id}")

    assert response.status_code == 200
    assert response.get_json()["status"] == "HIBERNATING"
    assert response.get_json()["isFinished"] is False


def test_get_failed_run(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = start_and_wait(client, server, "/api/audit", {"fail": True})

    body = client.get(f"/api/audit?runId={run_id}").get_json()

    assert body["isFailed"] is True
    assert body["isFinished"] is True
    assert body["error"] == {"name": "TaskFailure", "message": "The site did not respond."}
    assert "output" not in body


def test_get_completed_run_null_output(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run("site-crawl", output=None)

    body = client.get(f"/api/crawl?runId={run_id}").get_json()

    assert "output" in body
    assert body["output"] is None


def test_get_completed_run_without_output(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run("site-crawl")

    response = client.get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 502
    assert response.get_json()["error"] == "output_unavailable"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "",
            "The query parameter runId is missing. Pass the run id returned when the run was"
            " started, such as ?runId=run_abc123.",
        ),
        (
            "?runId=abc",
            "The query parameter runId is invalid. Invalid run id 'abc': expected"
            " 'run_' followed by lowercase letters and digits, at most 64 characters.",
        ),
        (
            "?runId=run_a&runId=run_b",
            "The query parameter runId is given 2 times; expected one run id.",
        ),
    ],
)
def test_get_invalid_run_id(
    client: FlaskClient, server: EmulatorServer, query: str, message: str
) -> None:
    response = client.get(f"/api/crawl{query}")

    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_run_id", "field": "runId", "message": message}
    assert server.emulator.stats.api_calls["retrieve"] == 0


def test_get_unknown_run(client: FlaskClient) -> None:
    response = client.get("/api/crawl?runId=run_doesnotexist")

    assert response.status_code == 404
    assert response.get_json() == {
        "error": "run_not_found",
        "message": "Run run_doesnotexist was not found.",
    }


def test_get_other_task_run_as_unknown(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = start_and_wait(client, server, "/api/site-audit", {"large": True})

    response = client.get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 404
    assert response.get_json() == {
        "error": "run_not_found",
        "message": f"Run {run_id} was not found.",
    }
    assert sum(server.emulator.stats.downloads.values()) == 0


# -- upstream failures -----------------------------------------------------


def test_get_api_failure_502_logged(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_MAX_TRIES=1)
    run_id = server.emulator.create_run("site-crawl", output={"a": 1})
    server.emulator.faults.fail_api(times=1, status=500)
    caplog.set_level(logging.ERROR, logger="flask_trigger_outputs")

    response = app.test_client().get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 502
    assert response.get_json()["error"] == "upstream_unavailable"
    errors = [r for r in caplog.records if r.name == "flask_trigger_outputs.routes"]
    assert len(errors) == 1
    assert run_id in errors[0].getMessage()
    assert "upstream_unavailable" in errors[0].getMessage()
    assert server.secret_key not in caplog.text


def test_get_storage_failure_502_without_url(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_MAX_TRIES=1)
    run_id = server.emulator.create_run("site-crawl", output={"a": 1}, offload_output=True)
    server.emulator.faults.fail_storage(times=5, status=500)
    caplog.set_level(logging.DEBUG, logger="flask_trigger_outputs")

    response = app.test_client().get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 502
    body = response.get_json()
    assert body["error"] == "storage_error"
    assert "?" not in body["message"]
    assert "Signature" not in caplog.text
    assert "X-Amz" not in caplog.text
    assert any(r.levelno == logging.ERROR and run_id in r.getMessage() for r in caplog.records)


def test_get_download_timeout_504(server: EmulatorServer) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_MAX_TRIES=1, TRIGGER_OUTPUTS_READ_TIMEOUT=0.3)
    run_id = server.emulator.create_run("site-crawl", output={"a": 1}, offload_output=True)
    server.emulator.faults.slow_downloads(times=1, delay=1.5, keep_bytes=2)

    response = app.test_client().get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 504
    assert response.get_json()["error"] == "upstream_timeout"


def test_get_bad_secret_key_502(server: EmulatorServer) -> None:
    app = make_app(server, TRIGGER_SECRET_KEY="tr_dev_wrongkey")

    response = app.test_client().get("/api/crawl?runId=run_abc")

    assert response.status_code == 502
    body = response.get_json()
    assert body["error"] == "upstream_authentication_failed"
    assert "wrongkey" not in body["message"]


def test_unexpected_error_500_without_trace(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    def authorize(route_name: str, run: Run) -> bool:
        raise KeyError("session")

    app = make_app(server, authorize=authorize)
    run_id = server.emulator.create_run("site-crawl", output={"a": 1})

    response = app.test_client().get(f"/api/crawl?runId={run_id}")

    assert response.status_code == 500
    assert response.get_json() == {
        "error": "internal_error",
        "message": "The server failed to handle the request. The error has been logged.",
    }
    assert "Traceback" not in response.get_data(as_text=True)
    assert any(r.exc_info and r.levelno == logging.ERROR for r in caplog.records)


# -- access control --------------------------------------------------------


def test_authorize_rejection_as_unknown(server: EmulatorServer) -> None:
    seen: list[tuple[str, str]] = []

    def authorize(route_name: str, run: Run) -> bool:
        seen.append((route_name, run.id))
        return run.metadata is not None and run.metadata.get("owner") == "alice"

    app = make_app(server, authorize=authorize)
    client = app.test_client()
    allowed = server.emulator.create_run("site-crawl", output=1, metadata={"owner": "alice"})
    hidden = server.emulator.create_run("site-crawl", output=2, metadata={"owner": "bob"})

    assert client.get(f"/api/crawl?runId={allowed}").get_json()["output"] == 1
    response = client.get(f"/api/crawl/status?runId={hidden}")

    assert response.status_code == 404
    assert response.get_json() == {
        "error": "run_not_found",
        "message": f"Run {hidden} was not found.",
    }
    assert seen == [("crawl", allowed), ("crawl_status", hidden)]


def user_tags() -> list[str]:
    return [f"user:{request.headers['X-User']}"]


def test_run_tags_added_and_checked(server: EmulatorServer) -> None:
    app = make_app(server, run_tags=user_tags)
    client = app.test_client()

    response = client.post("/api/crawl", data="{}", headers={**CLIENT_HEADERS, "X-User": "alice"})
    run_id = response.get_json()["runId"]
    server.emulator.wait_for_run(run_id)

    assert server.emulator.get_run(run_id)["tags"] == ["user:alice"]
    own = client.get(f"/api/crawl?runId={run_id}", headers={"X-User": "alice"})
    assert own.status_code == 200
    other = client.get(f"/api/crawl?runId={run_id}", headers={"X-User": "mallory"})
    assert other.status_code == 404
    assert other.get_json() == client.get(
        "/api/crawl?runId=run_unknown", headers={"X-User": "mallory"}
    ).get_json() | {"message": f"Run {run_id} was not found."}


def test_run_tags_invalid_return_500(server: EmulatorServer) -> None:
    app = make_app(server, run_tags=lambda: "user:alice")

    response = post_json(app.test_client(), "/api/crawl", {})

    assert response.status_code == 500
    assert server.emulator.stats.api_calls["trigger"] == 0


# -- blueprint registration --------------------------------------------------


def test_url_prefix_config(server: EmulatorServer) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_URL_PREFIX="/v1")
    client = app.test_client()

    response = post_json(client, "/v1/api/crawl", {})

    assert response.status_code == 202
    assert response.get_json()["statusUrl"].startswith("/v1/api/crawl?runId=")
    assert client.get("/api/crawl?runId=run_x").status_code == 404


def test_blueprint_registered_by_app(server: EmulatorServer) -> None:
    app = make_app(server, register_blueprint=False)
    extension = app.extensions["trigger_outputs"].extension
    calls: list[str] = []

    @extension.blueprint.before_request
    def count_request() -> None:
        calls.append(request.path)

    app.register_blueprint(extension.blueprint, url_prefix="/jobs")
    client = app.test_client()

    response = post_json(client, "/jobs/api/audit", {})

    assert response.status_code == 202
    assert response.get_json()["statusUrl"].startswith("/jobs/api/audit?runId=")
    assert calls == ["/jobs/api/audit"]


def test_custom_task_identifiers(server: EmulatorServer) -> None:
    server.emulator.register_task("crawl-v2", lambda payload, context: {"v": 2})
    app = make_app(server, TRIGGER_OUTPUTS_TASK_CRAWL="crawl-v2")
    client = app.test_client()

    run_id = start_and_wait(client, server, "/api/crawl", {})

    assert client.get(f"/api/crawl?runId={run_id}").get_json()["output"] == {"v": 2}


def test_errors_outside_blueprint_untouched(server: EmulatorServer) -> None:
    app = make_app(server)

    @app.route("/boom")
    def boom() -> str:
        raise ValueError("app error")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom")

    assert response.status_code == 500
    assert response.mimetype == "text/html"


# -- content analysis ------------------------------------------------------


def poll_analysis(client: FlaskClient, extraction_id: str, analysis_id: str | None = None) -> Any:
    query = f"extractionRunId={extraction_id}"
    if analysis_id is not None:
        query += f"&analysisRunId={analysis_id}"
    response = client.get(f"/api/content/analyze?{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def analysis_runs(server: EmulatorServer) -> list[Any]:
    return [r for r in server.emulator.runs.all_runs() if r.task_identifier == "content-analysis"]


def test_content_analyze_post(client: FlaskClient, server: EmulatorServer) -> None:
    response = post_json(client, "/api/content/analyze", {"text": "one two three"})

    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"extractionRunId", "statusUrl"}
    assert body["statusUrl"] == f"/api/content/analyze?extractionRunId={body['extractionRunId']}"
    record = server.emulator.wait_for_run(body["extractionRunId"])
    assert record["taskIdentifier"] == "content-extraction"


def test_content_analyze_runs_analysis(client: FlaskClient, server: EmulatorServer) -> None:
    extraction_id = start_and_wait(client, server, "/api/content/analyze", {"text": "a b c "})
    body = poll_analysis(client, extraction_id)
    analysis_id = body["analysisRunId"]
    server.emulator.wait_for_run(analysis_id)

    body = poll_analysis(client, extraction_id, analysis_id)

    assert body["stage"] == "analysis"
    assert body["status"] == "COMPLETED"
    assert body["isFinished"] is True
    assert body["isSuccess"] is True
    assert body["output"] == {"words": 3, "url": None}
    assert body["extraction"]["runId"] == extraction_id
    assert body["analysis"]["runId"] == analysis_id
    assert "output" not in body["extraction"]
    assert body["metadata"] == {"progress": 1.0}
    assert len(analysis_runs(server)) == 1


def test_content_analyze_starts_analysis_once(client: FlaskClient, server: EmulatorServer) -> None:
    extraction_id = start_and_wait(client, server, "/api/content/analyze", {"text": "w "})

    bodies = [poll_analysis(client, extraction_id) for _ in range(3)]

    assert len({body["analysisRunId"] for body in bodies}) == 1
    assert len(analysis_runs(server)) == 1


def test_content_analyze_concurrent_polls(server: EmulatorServer) -> None:
    app = make_app(server)
    extraction_id = start_and_wait(
        app.test_client(), server, "/api/content/analyze", {"text": "w "}
    )
    results: list[str] = []
    barrier = threading.Barrier(6)

    def poll() -> None:
        barrier.wait()
        results.append(poll_analysis(app.test_client(), extraction_id)["analysisRunId"])

    threads = [threading.Thread(target=poll) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == 6
    assert len(set(results)) == 1
    assert len(analysis_runs(server)) == 1


def test_content_analyze_large_extraction(server: EmulatorServer) -> None:
    # Polls within the coalescing window share one run state, so the poll
    # right after the analysis finished could still see it running.
    client = make_app(server, TRIGGER_OUTPUTS_POLL_COALESCE=0.0).test_client()
    extraction_id = start_and_wait(
        client, server, "/api/content/analyze", {"text": "word ", "repeat": 150_000}
    )
    analysis_id = poll_analysis(client, extraction_id)["analysisRunId"]
    server.emulator.wait_for_run(analysis_id)

    body = poll_analysis(client, extraction_id, analysis_id)

    assert body["output"] == {"words": 150_000, "url": None}
    assert sum(server.emulator.stats.uploads.values()) == 1


def test_content_analyze_extraction_pending(client: FlaskClient, server: EmulatorServer) -> None:
    extraction_id = server.emulator.create_run("content-extraction", status="QUEUED")

    body = poll_analysis(client, extraction_id)

    assert body["stage"] == "extraction"
    assert body["status"] == "QUEUED"
    assert body["isFinished"] is False
    assert body["analysis"] is None
    assert body["analysisRunId"] is None
    assert "output" not in body
    assert analysis_runs(server) == []


def test_content_analyze_extraction_failed(client: FlaskClient, server: EmulatorServer) -> None:
    extraction_id = start_and_wait(client, server, "/api/content/analyze", {"fail": True})

    body = poll_analysis(client, extraction_id)

    assert body["stage"] == "extraction"
    assert body["isFailed"] is True
    assert body["isFinished"] is True
    assert body["error"] == {"name": "TaskFailure", "message": "The page could not be fetched."}
    assert analysis_runs(server) == []


def test_content_analyze_unrelated_analysis(client: FlaskClient, server: EmulatorServer) -> None:
    extraction_id = server.emulator.create_run("content-extraction", output={"text": "a"})
    unrelated = server.emulator.create_run("content-analysis", output={"words": 9})

    response = client.get(
        f"/api/content/analyze?extractionRunId={extraction_id}&analysisRunId={unrelated}"
    )

    assert response.status_code == 404
    assert response.get_json()["message"] == f"Run {unrelated} was not found."


def test_content_analyze_wrong_task(client: FlaskClient, server: EmulatorServer) -> None:
    crawl_id = server.emulator.create_run("site-crawl", output={"text": "a"})

    response = client.get(f"/api/content/analyze?extractionRunId={crawl_id}")

    assert response.status_code == 404
    assert analysis_runs(server) == []


def test_content_analyze_missing_parameter(client: FlaskClient) -> None:
    response = client.get("/api/content/analyze?runId=run_abc")

    assert response.status_code == 400
    assert response.get_json()["field"] == "extractionRunId"


def test_content_analyze_tags(server: EmulatorServer) -> None:
    app = make_app(server, run_tags=user_tags)
    client = app.test_client()
    alice = {"X-User": "alice"}
    response = client.post(
        "/api/content/analyze", data='{"text": "x y"}', headers={**CLIENT_HEADERS, **alice}
    )
    extraction_id = response.get_json()["extractionRunId"]
    server.emulator.wait_for_run(extraction_id)

    other = client.get(
        f"/api/content/analyze?extractionRunId={extraction_id}", headers={"X-User": "bob"}
    )
    own = client.get(f"/api/content/analyze?extractionRunId={extraction_id}", headers=alice)

    assert other.status_code == 404
    assert analysis_runs(server)[0].tags == sorted(["user:alice", f"extraction:{extraction_id}"])
    assert own.status_code == 200


def test_content_analyze_output_too_large_for_payload(server: EmulatorServer) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE=2000)
    extraction_id = server.emulator.create_run("content-extraction", output={"text": "a" * 5000})

    response = app.test_client().get(f"/api/content/analyze?extractionRunId={extraction_id}")

    assert response.status_code == 409
    assert response.get_json()["error"] == "analysis_not_started"
    assert analysis_runs(server) == []


def test_blueprint_hook_abort_json(server: EmulatorServer) -> None:
    app = make_app(server, register_blueprint=False)
    extension = app.extensions["trigger_outputs"].extension

    @extension.blueprint.before_request
    def require_login() -> None:
        if "X-User" not in request.headers:
            abort(401)

    app.register_blueprint(extension.blueprint)
    client = app.test_client()

    anonymous = post_json(client, "/api/crawl", {})
    signed_in = client.post("/api/crawl", data="{}", headers={**CLIENT_HEADERS, "X-User": "a"})

    assert anonymous.status_code == 401
    assert anonymous.get_json()["error"] == "unauthorized"
    assert signed_in.status_code == 202


def test_authorize_sees_both_analysis_runs(server: EmulatorServer) -> None:
    seen: list[tuple[str, str]] = []

    def authorize(route_name: str, run: Run) -> bool:
        seen.append((route_name, run.task_identifier))
        return True

    app = make_app(server, authorize=authorize)
    extraction_id = server.emulator.create_run("content-extraction", output={"text": "a b"})

    body = poll_analysis(app.test_client(), extraction_id)

    assert body["analysisRunId"] is not None
    assert seen == [
        ("content_analyze", "content-extraction"),
        ("content_analyze", "content-analysis"),
    ]


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/crawl/status", "GET, HEAD, OPTIONS"),
        ("/api/audit", "GET, POST, HEAD, OPTIONS"),
        ("/api/content/analyze", "GET, POST, HEAD, OPTIONS"),
    ],
)
def test_options_lists_route_methods(client: FlaskClient, path: str, allow: str) -> None:
    response = client.options(path)

    assert response.status_code == 200
    assert response.headers["Allow"] == allow


def test_head_polls_without_body(client: FlaskClient, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run("site-crawl", output={"a": 1})

    response = client.head(f"/api/crawl?runId={run_id}")

    assert response.status_code == 200
    assert response.get_data() == b""
