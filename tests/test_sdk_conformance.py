"""The official TypeScript SDK reads the emulator's runs as it reads Trigger.dev's.

``runs.retrieve()`` of ``@trigger.dev/sdk`` validates every response with its
zod schemas, so a wrong run shape makes it throw. Every packet vector is
stored as a task output twice: inline, where the emulator renders it as
Trigger.dev's ``parsePacketAsJson`` does and the SDK must see
``expected_as_json``, and offloaded, where the SDK downloads the presigned
URL itself and must decode ``expected_typed``.

The SDK is installed with npm into a cache folder outside the repository
(``$TRIGGER_TSDK_DIR``, default ``~/.cache/flask-trigger-outputs/tsdk``) the
first time it is missing. Each emulator's runs go to one Node process so the
whole corpus costs two Node start-ups.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import VECTORS_DIR

from flask_trigger_outputs.emulator import Emulator, EmulatorServer, StoredPacket, TaskContext

SDK_VERSION = "4.8.3"
SDK_TIMEOUT = 300.0
SECRET_KEY = "tr_dev_conformance"

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def load_cases(vectors_dir: Path) -> dict[str, dict[str, Any]]:
    """Read every vector that a task can store, with its packet and expected values.

    Cases whose packet data is not a string are left out: the official
    serializer falls back to a raw object there, and a real run fails with
    TASK_OUTPUT_ERROR before anything is stored.
    """
    cases: dict[str, dict[str, Any]] = {}
    for path in sorted((vectors_dir / "cases").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if case.get("packet_data_is_string") is False:
            continue
        if "body_file" in case:
            body_file = vectors_dir / case["body_file"]
            if not body_file.is_file():
                continue
            case["packet"] = {
                "data": body_file.read_text(encoding="utf-8"),
                "dataType": case["dataType"],
            }
            for name in ("expected_typed", "expected_as_json"):
                case[name] = json.loads((vectors_dir / case[f"{name}_file"]).read_text("utf-8"))
        cases[case["name"]] = case
    return cases


CASE_NAMES = sorted(load_cases(VECTORS_DIR)) if VECTORS_DIR.is_dir() else []


def tag_json(value: Any) -> Any:
    """Tag a plain JSON value the way the harness's ``typeTag`` prints it.

    An object with its own ``$type`` key is wrapped, so user data is never
    mistaken for a tag.
    """
    if isinstance(value, dict):
        tagged = {key: tag_json(item) for key, item in value.items()}
        return {"$type": "object", "value": tagged} if "$type" in value else tagged
    if isinstance(value, list):
        return [tag_json(item) for item in value]
    return value


def replace_lone_surrogates(value: Any) -> Any:
    """Replace lone surrogates by U+FFFD in every string of ``value``.

    The SDK's download decodes text as UTF-8, which turns a lone surrogate
    into U+FFFD, so an offloaded string cannot keep one.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {key: replace_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [replace_lone_surrogates(item) for item in value]
    return value


@pytest.fixture(scope="session")
def sdk_dir(node_executable: str) -> Path:
    """Return a folder with ``@trigger.dev/sdk`` installed, installing it when missing."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = Path(os.environ.get("TRIGGER_TSDK_DIR", default / "flask-trigger-outputs" / "tsdk"))
    package_file = folder / "node_modules" / "@trigger.dev" / "sdk" / "package.json"
    installed = package_file.is_file() and json.loads(package_file.read_text("utf-8"))
    if installed and installed["version"] == SDK_VERSION:
        return folder

    npm = shutil.which("npm") or str(Path(node_executable).with_name("npm"))
    if not Path(npm).exists():
        reason = "npm is not installed; it installs @trigger.dev/sdk for this test"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)

    folder.mkdir(parents=True, exist_ok=True)
    command = [
        npm,
        "install",
        "--prefix",
        str(folder),
        "--no-audit",
        "--no-fund",
        f"@trigger.dev/sdk@{SDK_VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"npm install failed:\n{result.stderr[-4000:]}"
    return folder


@pytest.fixture(scope="session")
def sdk_script(vectors_dir: Path) -> Path:
    """Return the harness that calls ``runs.retrieve()`` and prints type-tagged results."""
    script = vectors_dir.parent / "tools" / "sdk_retrieve.mjs"
    if not script.is_file():
        reason = f"SDK harness not found at {script}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return script


def retrieve_with_sdk(
    node: str, script: Path, sdk: Path, server: EmulatorServer, run_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Retrieve every run with the official SDK in one Node process."""
    command = [node, str(script), server.url, server.secret_key, *run_ids]
    environment = {**os.environ, "TSDK_DIR": str(sdk)}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=SDK_TIMEOUT, env=environment, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]

    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {line["runId"]: line for line in lines}


def vector_task(cases: dict[str, dict[str, Any]]) -> Any:
    """Build a task whose output is the packet of the case named by its payload."""

    def task(payload: Any, context: TaskContext) -> StoredPacket:
        packet = cases[payload]["packet"]
        return StoredPacket(packet.get("data"), packet["dataType"])

    return task


def run_corpus(
    node: str, script: Path, sdk: Path, cases: dict[str, dict[str, Any]], *, offload: bool
) -> dict[str, dict[str, Any]]:
    """Store every case as a run output and return what the SDK resolved, by case name."""
    # A threshold of 0 offloads every packet that has data; 2**40 offloads none.
    emulator = Emulator(SECRET_KEY, offload_threshold=0 if offload else 2**40)
    emulator.register_task("vector", vector_task(cases))
    with EmulatorServer(emulator) as server:
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        run_ids: dict[str, str] = {}
        for name in cases:
            response = requests.post(
                f"{server.url}/api/v1/tasks/vector/trigger",
                json={"payload": name},
                headers=headers,
                timeout=10,
            )
            assert response.status_code == 200, response.text
            run_ids[name] = response.json()["id"]
        for run_id in run_ids.values():
            assert emulator.wait_for_run(run_id, timeout=30)["status"] == "COMPLETED"

        results = retrieve_with_sdk(node, script, sdk, server, list(run_ids.values()))
    return {name: results[run_id] for name, run_id in run_ids.items()}


@pytest.fixture(scope="module")
def cases(vectors_dir: Path) -> dict[str, dict[str, Any]]:
    return load_cases(vectors_dir)


@pytest.fixture(scope="module")
def inline_results(
    node_executable: str, sdk_script: Path, sdk_dir: Path, cases: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    return run_corpus(node_executable, sdk_script, sdk_dir, cases, offload=False)


@pytest.fixture(scope="module")
def offloaded_results(
    node_executable: str, sdk_script: Path, sdk_dir: Path, cases: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    return run_corpus(node_executable, sdk_script, sdk_dir, cases, offload=True)


def test_corpus_is_not_empty(cases: dict[str, dict[str, Any]]) -> None:
    assert len(cases) >= 90
    assert any("body_file" in case for case in cases.values())


@pytest.mark.parametrize("name", CASE_NAMES)
def test_sdk_reads_inline_output(
    name: str, cases: dict[str, dict[str, Any]], inline_results: dict[str, dict[str, Any]]
) -> None:
    case = cases[name]
    result = inline_results[name]

    assert result["error"] is None, result["error"]
    assert result["status"] == "COMPLETED"
    assert result["outputPresignedUrl"] is None
    assert result["payload"] == name
    if case.get("expected_as_json_absent"):
        assert result["output_is_undefined"] is True
    else:
        assert result["output"] == tag_json(case["expected_as_json"])


@pytest.mark.parametrize("name", CASE_NAMES)
def test_sdk_reads_offloaded_output(
    name: str, cases: dict[str, dict[str, Any]], offloaded_results: dict[str, dict[str, Any]]
) -> None:
    case = cases[name]
    result = offloaded_results[name]

    assert result["error"] is None, result["error"]
    assert result["status"] == "COMPLETED"
    assert result["payloadPresignedUrl"] is not None
    assert result["payload"] == name
    if case["packet"].get("data") is not None:
        assert result["outputPresignedUrl"] is not None
    expected = replace_lone_surrogates(case["expected_typed"])
    assert replace_lone_surrogates(result["output"]) == expected


@pytest.fixture
def state_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(SECRET_KEY)) as server:
        yield server


def test_sdk_accepts_every_run_state(
    node_executable: str, sdk_script: Path, sdk_dir: Path, state_server: EmulatorServer
) -> None:
    emulator = state_server.emulator
    run_ids = {
        "queued": emulator.create_run("site-crawl", status="QUEUED", payload={"url": "u"}),
        "executing": emulator.create_run(
            "site-crawl", status="EXECUTING", metadata={"progress": 0.4}, tags=["a", "b"]
        ),
        "waiting": emulator.create_run(status="WAITING"),
        "canceled": emulator.create_run(status="CANCELED"),
        "failed": emulator.create_run(
            status="FAILED",
            error={"name": "TypeError", "message": "bad input", "stackTrace": "at task"},
        ),
        "completed_empty": emulator.create_run(status="COMPLETED"),
        "idempotent": emulator.trigger("echo", {"a": 1}, idempotency_key="k1", ttl="1h"),
    }
    emulator.wait_for_run(run_ids["idempotent"])

    results = retrieve_with_sdk(
        node_executable, sdk_script, sdk_dir, state_server, list(run_ids.values())
    )

    for state, run_id in run_ids.items():
        assert results[run_id]["error"] is None, f"{state}: {results[run_id]['error']}"
    assert results[run_ids["queued"]]["status"] == "QUEUED"
    assert results[run_ids["executing"]]["status"] == "EXECUTING"
    assert results[run_ids["failed"]]["run_error"]["message"] == "bad input"
    assert results[run_ids["completed_empty"]]["output_is_undefined"] is True
    assert results[run_ids["idempotent"]]["output"] == {"a": 1}


def test_sdk_reports_unknown_run(
    node_executable: str, sdk_script: Path, sdk_dir: Path, state_server: EmulatorServer
) -> None:
    results = retrieve_with_sdk(
        node_executable, sdk_script, sdk_dir, state_server, ["run_doesnotexist"]
    )

    assert results["run_doesnotexist"]["error_status"] == 404
