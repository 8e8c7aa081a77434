"""The emulator's command line and its pytest fixtures."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_trigger_outputs.emulator import Emulator, EmulatorServer, TaskContext
from flask_trigger_outputs.emulator.__main__ import load_tasks, main

TESTS_DIR = Path(__file__).resolve().parent


def reverse(payload: Any, context: TaskContext) -> Any:
    return str(payload)[::-1]


#: Tasks the command line loads with ``--tasks test_emulator_cli:CLI_TASKS``.
CLI_TASKS = {"reverse": reverse}


def register_upper(emulator: Emulator) -> None:
    emulator.register_task("upper", lambda payload, context: str(payload).upper())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no output from the emulator within {timeout} seconds")
    return process.stdout.readline().strip()


@pytest.fixture
def cli_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "flask_trigger_outputs.emulator",
        "--port",
        str(port),
        "--secret-key",
        "tr_dev_cli",
        "--offload-threshold",
        "16",
        "--tasks",
        "test_emulator_cli:CLI_TASKS",
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.getcwd()])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_cli_prints_url_and_serves(cli_process: tuple[subprocess.Popen[str], int]) -> None:
    process, port = cli_process

    url = read_line(process, timeout=30)

    assert url == f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer tr_dev_cli"}
    trigger = requests.post(
        f"{url}/api/v1/tasks/reverse/trigger",
        json={"payload": "abcdef" * 5},
        headers=headers,
        timeout=5,
    )
    assert trigger.status_code == 200
    run_id = trigger.json()["id"]
    for _ in range(100):
        run = requests.get(f"{url}/api/v3/runs/{run_id}", headers=headers, timeout=5).json()
        if run["isCompleted"]:
            break
        time.sleep(0.05)
    assert run["status"] == "COMPLETED"
    # 30 bytes of output is over the 16-byte threshold given on the command line.
    assert "output" not in run
    assert requests.get(run["outputPresignedUrl"], timeout=5).text == "fedcba" * 5
    unauthorized = requests.get(f"{url}/api/v3/runs/{run_id}", timeout=5)
    assert unauthorized.status_code == 401


def test_cli_stops_on_interrupt(cli_process: tuple[subprocess.Popen[str], int]) -> None:
    process, _ = cli_process
    read_line(process, timeout=30)

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=15) == 0


def test_cli_rejects_bad_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--secret-key", "k", "--tasks", "no_such_module_here:TASKS"])

    assert status == 2
    assert "cannot load tasks" in capsys.readouterr().err


def test_cli_requires_secret_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--port", "0"])

    assert exit_info.value.code == 2
    assert "--secret-key" in capsys.readouterr().err


def test_load_tasks_mapping() -> None:
    emulator = Emulator()

    load_tasks("test_emulator_cli:CLI_TASKS", emulator)

    assert emulator.runs.has_task("reverse")
    emulator.close()


def test_load_tasks_callable() -> None:
    emulator = Emulator()

    load_tasks("test_emulator_cli:register_upper", emulator)

    assert emulator.runs.has_task("upper")
    emulator.close()


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("test_emulator_cli", ValueError),
        ("test_emulator_cli:TESTS_DIR", ValueError),
        ("test_emulator_cli:missing", AttributeError),
    ],
)
def test_load_tasks_rejects(spec: str, error: type[Exception]) -> None:
    emulator = Emulator()

    with pytest.raises(error):
        load_tasks(spec, emulator)
    emulator.close()


# -- pytest fixtures -----------------------------------------------------


def test_fixture_serves_emulator(trigger_emulator: EmulatorServer) -> None:
    headers = {"Authorization": f"Bearer {trigger_emulator.secret_key}"}

    response = requests.get(f"{trigger_emulator.url}/api/v3/runs/run_x", headers=headers, timeout=5)

    assert response.status_code == 404
    assert trigger_emulator.secret_key.startswith("tr_dev_")
    assert trigger_emulator.emulator.stats.api_calls["retrieve"] == 1


@pytest.mark.trigger_emulator(offload_threshold=8, url_expiry=60)
def test_fixture_marker_sets_options(trigger_emulator: EmulatorServer) -> None:
    assert trigger_emulator.emulator.offload_threshold == 8
    assert trigger_emulator.emulator.store.url_expiry == 60


def test_fixture_app_is_configured(trigger_app: Any, trigger_emulator: EmulatorServer) -> None:
    assert trigger_app.config["TRIGGER_API_URL"] == trigger_emulator.url
    assert trigger_app.config["TRIGGER_SECRET_KEY"] == trigger_emulator.secret_key
    assert "trigger_outputs" in trigger_app.extensions


def test_server_stop_frees_port() -> None:
    server = EmulatorServer(Emulator()).start()
    port = server.port

    server.stop()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
