"""Tests for the helpers that read runs through ``current_app``."""

from __future__ import annotations

import datetime

import pytest
from flask import Flask, jsonify

from flask_trigger_outputs.emulator import Emulator, EmulatorServer
from flask_trigger_outputs.errors import RunFailedError, RunNotFinishedError
from flask_trigger_outputs.extension import TriggerOutputs
from flask_trigger_outputs.helpers import get_run_output, get_run_payload, get_run_result

CRAWLED_AT = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
OUTPUT = {"pages": 3, "crawledAt": CRAWLED_AT}
OUTPUT_AS_JSON = {"pages": 3, "crawledAt": "2024-05-01T12:00:00.000Z"}


def test_get_run_output_in_view(trigger_app: Flask, trigger_emulator: EmulatorServer) -> None:
    run_id = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)

    @trigger_app.get("/crawl/<run_id>")
    def crawl(run_id: str) -> object:
        output = get_run_output(run_id)
        return jsonify(pages=output["pages"], year=output["crawledAt"].year)

    response = trigger_app.test_client().get(f"/crawl/{run_id}")

    assert response.status_code == 200
    assert response.get_json() == {"pages": 3, "year": 2024}


def test_get_run_output_in_app_context(
    trigger_app: Flask, trigger_emulator: EmulatorServer
) -> None:
    offloaded = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    inline = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=False)

    with trigger_app.app_context():
        assert get_run_output(offloaded) == OUTPUT
        assert get_run_output(offloaded, as_json=True) == OUTPUT_AS_JSON
        assert get_run_output(inline) == OUTPUT_AS_JSON


def test_get_run_output_without_context() -> None:
    with pytest.raises(RuntimeError) as info:
        get_run_output("run_abc")

    assert str(info.value) == (
        "Reading a Trigger.dev run needs an application context. Call this from a view,"
        " or inside 'with app.app_context():'."
    )


def test_get_run_output_without_extension() -> None:
    app = Flask("plain_app")

    with app.app_context(), pytest.raises(RuntimeError) as info:
        get_run_output("run_abc")

    assert str(info.value) == (
        "flask-trigger-outputs is not initialized on app 'plain_app'."
        " Was TriggerOutputs(app) or init_app(app) called?"
    )


def test_get_run_output_errors_propagate(
    trigger_app: Flask, trigger_emulator: EmulatorServer
) -> None:
    pending = trigger_emulator.emulator.create_run(status="EXECUTING")
    failed = trigger_emulator.emulator.create_run(
        status="FAILED", error={"name": "Error", "message": "boom"}
    )

    with trigger_app.app_context():
        with pytest.raises(RunNotFinishedError):
            get_run_output(pending)
        with pytest.raises(RunFailedError):
            get_run_output(failed)


def test_get_run_payload(trigger_app: Flask, trigger_emulator: EmulatorServer) -> None:
    run_id = trigger_emulator.emulator.create_run(
        status="QUEUED", payload=OUTPUT, offload_payload=True
    )

    with trigger_app.app_context():
        assert get_run_payload(run_id) == OUTPUT
        assert get_run_payload(run_id, as_json=True) == OUTPUT_AS_JSON


def test_get_run_result(trigger_app: Flask, trigger_emulator: EmulatorServer) -> None:
    done = trigger_emulator.emulator.create_run(output=OUTPUT, offload_output=True)
    running = trigger_emulator.emulator.create_run(status="EXECUTING")

    with trigger_app.test_request_context():
        done_result = get_run_result(done)
        running_result = get_run_result(running)

    assert done_result.has_output
    assert done_result.output == OUTPUT_AS_JSON
    assert done_result.output_offloaded is True
    assert not running_result.has_output
    assert running_result.run.status == "EXECUTING"


def test_helpers_use_each_apps_own_reader(trigger_emulator: EmulatorServer) -> None:
    with EmulatorServer(Emulator()) as other_server:
        first = Flask("first")
        second = Flask("second")
        first.config.update(
            TRIGGER_API_URL=trigger_emulator.url, TRIGGER_SECRET_KEY=trigger_emulator.secret_key
        )
        second.config.update(
            TRIGGER_API_URL=other_server.url, TRIGGER_SECRET_KEY=other_server.secret_key
        )
        extension = TriggerOutputs()
        extension.init_app(first)
        extension.init_app(second)
        first_run = trigger_emulator.emulator.create_run(output="first", offload_output=False)
        second_run = other_server.emulator.create_run(output="second", offload_output=False)

        with first.app_context():
            assert get_run_output(first_run) == "first"
        with second.app_context():
            assert get_run_output(second_run) == "second"
