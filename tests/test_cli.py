"""Tests for the ``flask trigger-outputs`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from extension_tasks import LARGE_OUTPUT_SIZE, make_app
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_trigger_outputs.emulator import EmulatorServer


@pytest.fixture
def app(server: EmulatorServer) -> Flask:
    return make_app(server)


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def test_status_prints_run(runner: FlaskCliRunner, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run(
        "site-crawl", status="EXECUTING", metadata={"progress": 0.5}
    )

    result = runner.invoke(args=["trigger-outputs", "status", run_id])

    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["runId"] == run_id
    assert body["status"] == "EXECUTING"
    assert body["metadata"] == {"progress": 0.5}
    assert "output" not in body


def test_status_invalid_run_id(runner: FlaskCliRunner, server: EmulatorServer) -> None:
    result = runner.invoke(args=["trigger-outputs", "status", "run-1"])

    assert result.exit_code == 2
    assert "Invalid value for RUN_ID: Invalid run id 'run-1'" in result.output
    assert server.emulator.stats.api_calls["retrieve"] == 0


def test_status_unknown_run(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["trigger-outputs", "status", "run_missing"])

    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "run_missing" in result.output


def test_output_prints_json(runner: FlaskCliRunner, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run("site-crawl", output={"pages": ["/", "/a"], "n": 2})

    result = runner.invoke(args=["trigger-outputs", "output", run_id])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"pages": ["/", "/a"], "n": 2}


def test_output_offloaded_to_file(
    runner: FlaskCliRunner, server: EmulatorServer, tmp_path: Path
) -> None:
    run_id = server.emulator.trigger("site-crawl", {"large": True})
    server.emulator.wait_for_run(run_id)
    target = tmp_path / "output.json"

    result = runner.invoke(args=["trigger-outputs", "output", run_id, "--output", str(target)])

    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert json.loads(target.read_text("utf-8"))["html"] == "x" * LARGE_OUTPUT_SIZE
    assert sum(server.emulator.stats.downloads.values()) == 1


def test_output_payload(runner: FlaskCliRunner, server: EmulatorServer) -> None:
    run_id = server.emulator.create_run("site-crawl", payload={"url": "https://example.com"})

    result = runner.invoke(args=["trigger-outputs", "output", "--payload", run_id])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"url": "https://example.com"}


def test_output_unfinished_run(
    runner: FlaskCliRunner, server: EmulatorServer, tmp_path: Path
) -> None:
    run_id = server.emulator.create_run("site-crawl", status="QUEUED")
    target = tmp_path / "output.json"

    result = runner.invoke(args=["trigger-outputs", "output", run_id, "-o", str(target)])

    assert result.exit_code == 1
    assert f"Error: Run {run_id!r} has not finished yet (status QUEUED)" in result.output
    assert not target.exists()


def test_output_failed_run(runner: FlaskCliRunner, server: EmulatorServer) -> None:
    run_id = server.emulator.trigger("site-crawl", {"fail": True})
    server.emulator.wait_for_run(run_id)

    result = runner.invoke(args=["trigger-outputs", "output", run_id])

    assert result.exit_code == 1
    assert "The site did not respond." in result.output


def test_config_redacts_secret_key(runner: FlaskCliRunner, server: EmulatorServer) -> None:
    result = runner.invoke(args=["trigger-outputs", "config"])

    assert result.exit_code == 0, result.output
    assert server.secret_key not in result.output
    lines = result.output.splitlines()
    assert "TRIGGER_SECRET_KEY = 'tr_dev_****'" in lines
    assert f"TRIGGER_API_URL = {server.url!r}" in lines
    assert "TRIGGER_PREVIEW_BRANCH = None" in lines
    assert "TRIGGER_OUTPUTS_TASK_CRAWL = 'site-crawl'" in lines
    assert "TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE = 3145728" in lines
    assert "TRIGGER_OUTPUTS_ALLOW_REDIRECT = False" in lines
    assert len(lines) == 27


def test_commands_listed(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["trigger-outputs", "--help"])

    assert result.exit_code == 0
    for command in ("status", "output", "config"):
        assert command in result.output
