"""Tests that the OpenAPI document is valid and matches real responses."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from extension_tasks import ROUTE_TASKS, make_app
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_trigger_outputs.emulator import EmulatorServer

HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    text = resources.files("flask_trigger_outputs").joinpath("openapi.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@pytest.fixture
def app(server: EmulatorServer) -> Flask:
    return make_app(server, TRIGGER_OUTPUTS_MAX_TRIES=1, TRIGGER_OUTPUTS_ALLOW_REDIRECT=True)


def response_schema(document: dict[str, Any], path: str, method: str, status: int) -> Any:
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document status {status}"
    response = responses[str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def check_response(
    document: dict[str, Any], path: str, method: str, response: TestResponse
) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document["components"],
        **response_schema(document, path, method, response.status_code),
    }
    assert response.mimetype == "application/json"
    jsonschema_rs.validator_for(schema).validate(response.get_json())


def test_document_valid_openapi_31(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"

    schemathesis.openapi.from_dict(document).validate()


def test_document_paths_match_blueprint(document: dict[str, Any], app: Flask) -> None:
    routes = {
        rule.rule: rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("trigger_outputs.")
    }

    assert set(document["paths"]) == set(routes)
    assert set(document["paths"]["/api/crawl/status"]) == {"get"}
    for path, operations in document["paths"].items():
        if path != "/api/crawl/status":
            assert set(operations) == {"get", "post"}, path


def test_schema_rejects_wrong_shape(document: dict[str, Any]) -> None:
    schema = {"components": document["components"], "$ref": "#/components/schemas/RunStatus"}
    validator = jsonschema_rs.validator_for(schema)
    body = {
        "runId": "run_abc",
        "taskIdentifier": "site-crawl",
        "status": "COMPLETED",
        "isQueued": False,
        "isExecuting": False,
        "isWaiting": False,
        "isCompleted": True,
        "isSuccess": True,
        "isFailed": False,
        "isCancelled": False,
        "isFinished": True,
        "metadata": None,
        "createdAt": None,
        "updatedAt": None,
        "startedAt": None,
        "finishedAt": None,
        "error": None,
        "outputSize": None,
        "outputOffloaded": False,
    }

    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "output": {"a": 1}})
    assert not validator.is_valid({**body, "isFinished": "yes"})
    assert not validator.is_valid({key: value for key, value in body.items() if key != "runId"})


@pytest.mark.parametrize("path", sorted(ROUTE_TASKS))
def test_task_route_responses_match(
    document: dict[str, Any], client: FlaskClient, server: EmulatorServer, path: str
) -> None:
    started = client.post(path, data=json.dumps({"url": "https://example.com"}), headers=HEADERS)
    check_response(document, path, "POST", started)
    run_id = started.get_json()["runId"]
    server.emulator.wait_for_run(run_id)
    large_id = server.emulator.trigger(ROUTE_TASKS[path], {"large": True})
    server.emulator.wait_for_run(large_id)
    failed_id = server.emulator.trigger(ROUTE_TASKS[path], {"fail": True})
    server.emulator.wait_for_run(failed_id)

    responses = [
        ("GET", client.get(f"{path}?runId={run_id}")),
        ("GET", client.get(f"{path}?runId={large_id}")),
        ("GET", client.get(f"{path}?runId={failed_id}")),
        ("GET", client.get(f"{path}?runId=bad")),
        ("GET", client.get(f"{path}?runId=run_unknown")),
        ("POST", client.post(path, data="[]", headers=HEADERS)),
        ("POST", client.post(path, data="{}", headers={"Content-Type": "text/plain"})),
        ("POST", client.post(path, data=json.dumps({"b": "c" * 3_200_000}), headers=HEADERS)),
    ]

    statuses = [response.status_code for _, response in responses]
    assert statuses == [200, 200, 200, 400, 404, 400, 415, 413]
    for method, response in responses:
        check_response(document, path, method, response)


def test_status_route_responses_match(
    document: dict[str, Any], client: FlaskClient, server: EmulatorServer
) -> None:
    done = server.emulator.create_run("site-crawl", output={"a": 1}, offload_output=True)
    running = server.emulator.create_run("site-crawl", status="EXECUTING", metadata={"p": 1})

    for run_id in (done, running):
        response = client.get(f"/api/crawl/status?runId={run_id}")
        assert response.status_code == 200
        check_response(document, "/api/crawl/status", "GET", response)

    not_allowed = client.post("/api/crawl/status", data="{}", headers=HEADERS)
    assert not_allowed.status_code == 405
    check_response(document, "/api/crawl/status", "GET", not_allowed)


def test_content_analyze_responses_match(
    document: dict[str, Any], client: FlaskClient, server: EmulatorServer
) -> None:
    path = "/api/content/analyze"
    started = client.post(path, data=json.dumps({"text": "a b"}), headers=HEADERS)
    check_response(document, path, "POST", started)
    extraction_id = started.get_json()["extractionRunId"]
    pending_id = server.emulator.create_run("content-extraction", status="EXECUTING")
    server.emulator.wait_for_run(extraction_id)

    first = client.get(f"{path}?extractionRunId={extraction_id}")
    analysis_id = first.get_json()["analysisRunId"]
    server.emulator.wait_for_run(analysis_id)
    responses = [
        first,
        client.get(f"{path}?extractionRunId={extraction_id}&analysisRunId={analysis_id}"),
        client.get(f"{path}?extractionRunId={pending_id}"),
        client.get(f"{path}?extractionRunId={extraction_id}&analysisRunId=nope"),
    ]

    assert [response.status_code for response in responses] == [200, 200, 200, 400]
    assert "output" in responses[1].get_json()
    for response in responses:
        check_response(document, path, "GET", response)


def test_upstream_error_responses_match(
    document: dict[str, Any], client: FlaskClient, server: EmulatorServer
) -> None:
    run_id = server.emulator.create_run("smart-audit", output={"a": 1}, offload_output=True)
    server.emulator.faults.fail_storage(times=3, status=500)
    storage_failure = client.get(f"/api/audit?runId={run_id}")
    server.emulator.faults.fail_api(times=1, status=503)
    api_failure = client.get(f"/api/audit?runId={run_id}")

    assert storage_failure.status_code == 502
    assert api_failure.status_code == 502
    check_response(document, "/api/audit", "GET", storage_failure)
    check_response(document, "/api/audit", "GET", api_failure)


def test_output_format_responses_match(
    document: dict[str, Any], client: FlaskClient, server: EmulatorServer
) -> None:
    path = "/api/site-audit"
    stored = server.emulator.create_run("site-audit", output={"a": 1}, offload_output=True)
    queued = server.emulator.create_run("site-audit", status="QUEUED")
    operation = document["paths"][path]["get"]

    raw = client.get(f"{path}?runId={stored}&format=raw")
    redirect = client.get(f"{path}?runId={stored}&format=redirect")
    not_finished = client.get(f"{path}?runId={queued}&format=raw")
    invalid = client.get(f"{path}?runId={stored}&format=xml")

    assert raw.status_code == 200
    assert raw.mimetype in operation["responses"]["200"]["content"]
    assert redirect.status_code == 307
    assert "307" in operation["responses"]
    assert not_finished.status_code == 409
    check_response(document, path, "GET", not_finished)
    assert invalid.status_code == 400
    assert invalid.get_json()["field"] == "format"
    check_response(document, path, "GET", invalid)
    assert {"name": "format", "in": "query"}.items() <= operation["parameters"][1].items()
