"""Ownership checks on every route: a run the request may not read is
indistinguishable from an unknown run.

The app tags runs with the user named in the ``X-User`` header (the
``run_tags`` hook) and rejects runs tagged ``blocked`` in ``authorize``.
For each GET route and output format, the test compares the response to an
unknown run id with the responses to a run of another task, a run of
another user and a run that ``authorize`` rejects. Status, headers and body
must be equal once the run ids are replaced by a placeholder. A request for
the user's own run gets 200, so the checks are not passing by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from extension_tasks import make_app, register_tasks
from flask import Flask, request
from werkzeug.test import TestResponse

from flask_trigger_outputs.emulator import Emulator, EmulatorServer
from flask_trigger_outputs.runs import Run

#: Routes that read one task's runs, with their task.
SINGLE_TASK_ROUTES = {
    "/api/crawl": "site-crawl",
    "/api/crawl/status": "site-crawl",
    "/api/site-audit": "site-audit",
    "/api/ai-strategy": "ai-strategy",
    "/api/audit": "smart-audit",
}
#: A task that no route above reads.
OTHER_TASK = "content-extraction"
UNKNOWN_RUN = "run_" + "z" * 25
OUTPUT = {"report": "ok", "pages": [1, 2, 3]}


def user_tags() -> list[str]:
    return [f"user:{request.headers.get('X-User', 'anonymous')}"]


def authorize(route_name: str, run: Run) -> bool:
    return "blocked" not in run.tags


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    # A low offload threshold, so format=raw and format=redirect have an
    # offloaded packet to serve.
    with EmulatorServer(Emulator(offload_threshold=64)) as server:
        register_tasks(server)
        yield server


@pytest.fixture(scope="module")
def app(server: EmulatorServer) -> Flask:
    return make_app(
        server,
        run_tags=user_tags,
        authorize=authorize,
        TRIGGER_OUTPUTS_MAX_TRIES=1,
        TRIGGER_OUTPUTS_ALLOW_REDIRECT=True,
    )


def create_run(server: EmulatorServer, task: str, *tags: str) -> str:
    return server.emulator.create_run(task, output=OUTPUT, tags=tags)


def normalized(response: TestResponse, *run_ids: str) -> tuple[int, dict[str, str], str]:
    """Return the status, headers and body of a response with every run id
    replaced by a placeholder."""
    text = response.get_data(as_text=True)
    for run_id in run_ids:
        text = text.replace(run_id, "<run>")
    headers = {name: value for name, value in response.headers.items() if name != "Content-Length"}
    return response.status_code, headers, text


def get(app: Flask, route: str, user: str, **query: str) -> TestResponse:
    return app.test_client().get(route, query_string=query, headers={"X-User": user})


#: Every single-task route with every output format it accepts.
ROUTE_FORMATS = [
    (route, output_format)
    for route in SINGLE_TASK_ROUTES
    for output_format in ([None] if route == "/api/crawl/status" else [None, "raw", "redirect"])
]


@pytest.mark.parametrize(("route", "output_format"), ROUTE_FORMATS)
def test_access_single_task_routes(
    route: str, output_format: str | None, app: Flask, server: EmulatorServer
) -> None:
    task = SINGLE_TASK_ROUTES[route]
    query: dict[str, Any] = {"format": output_format} if output_format else {}
    own = create_run(server, task, "user:alice")
    denied = {
        "another task": create_run(server, OTHER_TASK, "user:alice"),
        "another user": create_run(server, task, "user:bob"),
        "no tags": create_run(server, task),
        "rejected by authorize": create_run(server, task, "user:alice", "blocked"),
    }

    allowed = get(app, route, "alice", runId=own, **query)
    unknown = normalized(get(app, route, "alice", runId=UNKNOWN_RUN, **query), UNKNOWN_RUN)

    assert allowed.status_code in (200, 307), allowed.get_data(as_text=True)
    assert unknown[0] == 404
    assert '"error":"run_not_found"' in unknown[2].replace(" ", "")
    for case, run_id in denied.items():
        response = get(app, route, "alice", runId=run_id, **query)
        assert normalized(response, run_id) == unknown, case


def test_access_other_user_cannot_start_and_read(app: Flask, server: EmulatorServer) -> None:
    started = app.test_client().post(
        "/api/crawl", json={"url": "https://garden.example"}, headers={"X-User": "bob"}
    )
    run_id = started.get_json()["runId"]
    server.emulator.wait_for_run(run_id)

    as_bob = get(app, "/api/crawl", "bob", runId=run_id)
    as_alice = get(app, "/api/crawl", "alice", runId=run_id)
    unknown = get(app, "/api/crawl", "alice", runId=UNKNOWN_RUN)

    assert as_bob.status_code == 200
    assert normalized(as_alice, run_id) == normalized(unknown, UNKNOWN_RUN)


def test_access_content_analyze(app: Flask, server: EmulatorServer) -> None:
    route = "/api/content/analyze"
    started = app.test_client().post(
        route,
        json={"text": "one two three", "url": "https://garden.example"},
        headers={"X-User": "alice"},
    )
    extraction = started.get_json()["extractionRunId"]
    server.emulator.wait_for_run(extraction)
    first = get(app, route, "alice", extractionRunId=extraction)
    analysis = first.get_json()["analysisRunId"]
    server.emulator.wait_for_run(analysis)

    own = get(app, route, "alice", extractionRunId=extraction, analysisRunId=analysis)
    unknown_extraction = normalized(
        get(app, route, "alice", extractionRunId=UNKNOWN_RUN), UNKNOWN_RUN
    )
    unknown_analysis = normalized(
        get(app, route, "alice", extractionRunId=extraction, analysisRunId=UNKNOWN_RUN),
        extraction,
        UNKNOWN_RUN,
    )

    assert own.status_code == 200
    assert own.get_json()["output"] == {"words": 3, "url": "https://garden.example"}
    assert unknown_extraction[0] == 404
    assert unknown_analysis[0] == 404

    # Another user with the extraction id.
    other_user = get(app, route, "bob", extractionRunId=extraction)
    assert normalized(other_user, extraction) == unknown_extraction
    # Another user with both ids.
    other_user_both = get(app, route, "bob", extractionRunId=extraction, analysisRunId=analysis)
    assert normalized(other_user_both, extraction) == unknown_extraction
    # A run of another task given as the extraction run.
    crawl = create_run(server, "site-crawl", "user:alice")
    assert normalized(get(app, route, "alice", extractionRunId=crawl), crawl) == unknown_extraction
    # An analysis run of the same user that belongs to another extraction.
    unrelated = create_run(server, "content-analysis", "user:alice")
    response = get(app, route, "alice", extractionRunId=extraction, analysisRunId=unrelated)
    assert normalized(response, extraction, unrelated) == unknown_analysis
    # A run of another task given as the analysis run.
    response = get(app, route, "alice", extractionRunId=extraction, analysisRunId=crawl)
    assert normalized(response, extraction, crawl) == unknown_analysis
