"""Run the code examples of README.md against the emulator.

The Python blocks run in order in one namespace, as a reader would type
them, with ``TRIGGER_SECRET_KEY`` and ``TRIGGER_API_URL`` pointing at the
emulator. The JSON examples are compared with real answers, and the curl
and ``flask`` command lines are replayed through the test client and the
CLI runner.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from flask_trigger_outputs import TriggerOutputs
from flask_trigger_outputs.emulator import EmulatorServer

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK_PATTERN = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)

#: The README's two-line setup, which other blocks extend.
TWO_LINE_SETUP = (
    "from flask_trigger_outputs import TriggerOutputs\n\n"
    "app = Flask(__name__)\nTriggerOutputs(app)\n"
)

#: The run id the README uses in its examples; the tests replace it with a real one.
EXAMPLE_RUN_ID = "run_cm4x2y9k80001abcd1234efgh"


def readme_blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK_PATTERN.findall(README.read_text()) if lang == language]


def block_containing(blocks: list[str], text: str) -> str:
    matches = [block for block in blocks if text in block]
    assert len(matches) == 1, f"expected one README block containing {text!r}, found {len(matches)}"
    return matches[0]


@pytest.fixture
def readme_env(
    trigger_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> EmulatorServer:
    monkeypatch.setenv("TRIGGER_SECRET_KEY", trigger_emulator.secret_key)
    monkeypatch.setenv("TRIGGER_API_URL", trigger_emulator.url)
    monkeypatch.delenv("TRIGGER_PREVIEW_BRANCH", raising=False)
    monkeypatch.chdir(tmp_path)
    return trigger_emulator


def run_blocks_until(marker: str) -> dict[str, Any]:
    """Run the Python blocks in order, up to the one containing ``marker``, in one namespace.

    Later blocks reuse names of earlier ones (``Flask``, ``app``), as a reader
    following the README would.
    """
    blocks = readme_blocks("python")
    last = blocks.index(block_containing(blocks, marker))
    scope: dict[str, Any] = {"__name__": "readme"}
    for code in blocks[: last + 1]:
        if "def test_" not in code:
            exec(compile(code, str(README), "exec"), scope)
    return scope


def test_readme_python_blocks_are_all_tested() -> None:
    # Update this test when a block is added, so every block keeps a check.
    markers = [
        TWO_LINE_SETUP,
        "def create_app",
        'TRIGGER_OUTPUTS_URL_PREFIX="/v1"',
        "def crawled_pages",
        "def crawl_progress",
        "def authorize",
        "def test_crawl_route",
    ]
    blocks = readme_blocks("python")
    assert len(blocks) == len(markers)
    for marker in markers:
        block_containing(blocks, marker)


def test_readme_two_line_setup(readme_env: EmulatorServer) -> None:
    app: Flask = run_blocks_until(TWO_LINE_SETUP)["app"]
    state = app.extensions["trigger_outputs"]
    assert state.config.api_url == readme_env.url
    assert "/api/crawl" in {rule.rule for rule in app.url_map.iter_rules()}


def test_readme_app_factory(readme_env: EmulatorServer) -> None:
    namespace = run_blocks_until("def create_app")
    first = namespace["create_app"]()
    second = namespace["create_app"]()
    assert first.extensions["trigger_outputs"] is not second.extensions["trigger_outputs"]
    assert first.extensions["trigger_outputs"].extension is namespace["trigger_outputs"]

    # The README's advice for apps thrown away early: close, and requests
    # made afterwards still work by reconnecting.
    run_id = readme_env.emulator.create_run("site-crawl", output={"pages": ["/"]})
    first.extensions["trigger_outputs"].close()
    body = first.test_client().get("/api/crawl", query_string={"runId": run_id}).get_json()
    assert body["output"] == {"pages": ["/"]}
    second.extensions["trigger_outputs"].close()


def test_readme_configuration_example(readme_env: EmulatorServer) -> None:
    blocks = readme_blocks("python")
    scope: dict[str, Any] = {"__name__": "readme"}
    exec(compile(blocks[0], str(README), "exec"), scope)
    exec(
        compile(block_containing(blocks, 'TRIGGER_OUTPUTS_URL_PREFIX="/v1"'), str(README), "exec"),
        scope,
    )
    app: Flask = scope["app"]
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert "/v1/api/crawl" in rules
    assert app.extensions["trigger_outputs"].config.task_crawl == "crawl-website"


def test_readme_helper_view(readme_env: EmulatorServer) -> None:
    namespace = run_blocks_until("def crawled_pages")
    emulator = readme_env.emulator
    pages = [{"url": f"/page-{index}.html", "text": "x" * 200} for index in range(3000)]
    done = emulator.create_run("site-crawl", output={"pages": pages}, offload_output=True)
    running = emulator.create_run("site-crawl", status="EXECUTING")
    failed = emulator.create_run(
        "site-crawl",
        status="FAILED",
        error={"name": "Error", "message": "Crawl failed.", "stackTrace": ""},
    )
    client = namespace["app"].test_client()

    body = client.get(f"/reports/{done}/pages").get_json()
    assert body["pages"] == [page["url"] for page in pages]
    assert client.get(f"/reports/{running}/pages").status_code == 202
    response = client.get(f"/reports/{failed}/pages")
    assert response.status_code == 409
    assert response.get_json() == {"error": "Crawl failed."}

    malformed = client.get("/reports/bogus/pages")
    assert malformed.status_code == 400
    assert malformed.get_json()["error"] == "invalid_run_id"
    unknown = client.get("/reports/run_nosuchrun000000000/pages")
    assert unknown.status_code == 404
    assert unknown.get_json()["error"] == "run_not_found"


def test_readme_background_progress(readme_env: EmulatorServer) -> None:
    namespace = run_blocks_until("def crawl_progress")
    emulator = readme_env.emulator
    running = emulator.create_run("site-crawl", status="EXECUTING", metadata={"progress": 0.4})
    done = emulator.create_run("site-crawl", output={"pages": []})
    crawl_progress = namespace["crawl_progress"]
    assert crawl_progress(namespace["app"], running) == 0.4
    assert crawl_progress(namespace["app"], done) == 1.0


def test_readme_access_control(readme_env: EmulatorServer) -> None:
    namespace = run_blocks_until("def authorize")
    emulator = readme_env.emulator
    emulator.register_task("site-crawl", lambda payload, context: {"ok": True})
    emulator.register_task("smart-audit", lambda payload, context: {"ok": True})
    client = namespace["app"].test_client()

    crawl_id = client.post("/api/crawl", json={}).get_json()["runId"]
    emulator.wait_for_run(crawl_id)
    assert emulator.get_run(crawl_id)["tags"] == ["user:42"]
    assert client.get("/api/crawl", query_string={"runId": crawl_id}).get_json()["output"] == {
        "ok": True
    }

    audit_id = client.post("/api/audit", json={}).get_json()["runId"]
    emulator.wait_for_run(audit_id)
    assert client.get("/api/audit", query_string={"runId": audit_id}).status_code == 404

    untagged = emulator.create_run("site-crawl", output={"ok": True})
    assert client.get("/api/crawl", query_string={"runId": untagged}).status_code == 404


def test_readme_pytest_example(trigger_app: Flask, trigger_emulator: EmulatorServer) -> None:
    scope: dict[str, Any] = {"__name__": "readme"}
    exec(
        compile(
            block_containing(readme_blocks("python"), "def test_crawl_route"), str(README), "exec"
        ),
        scope,
    )
    scope["test_crawl_route"](trigger_app, trigger_emulator)


def test_readme_route_examples(readme_env: EmulatorServer) -> None:
    namespace = run_blocks_until("def crawled_pages")
    emulator = readme_env.emulator
    emulator.register_task("site-crawl", lambda payload, context: {"pagesCrawled": 0, "pages": []})
    client = namespace["app"].test_client()
    curl_lines = [
        line
        for block in readme_blocks("sh")
        for line in block.splitlines()
        if line.startswith("curl ")
    ]
    examples = [json.loads(block) for block in readme_blocks("json")]
    assert len(curl_lines) == len(examples) == 2

    post_answer = replay_curl(client, curl_lines[0], EXAMPLE_RUN_ID)
    assert post_answer.status_code == 202
    run_id = post_answer.get_json()["runId"]
    assert set(post_answer.get_json()) == set(examples[0])
    emulator.wait_for_run(run_id)

    get_answer = replay_curl(client, curl_lines[1], run_id)
    assert get_answer.status_code == 200
    assert set(get_answer.get_json()) == set(examples[1])


def replay_curl(client: Any, line: str, run_id: str) -> Any:
    """Send a README curl command through the Flask test client."""
    words = shlex.split(line.replace(EXAMPLE_RUN_ID, run_id))
    method = "GET"
    headers: dict[str, str] = {}
    data = None
    url = ""
    index = 1
    while index < len(words):
        word = words[index]
        if word == "-X":
            method = words[index + 1]
            index += 2
        elif word == "-H":
            name, value = words[index + 1].split(":", 1)
            headers[name.strip()] = value.strip()
            index += 2
        elif word == "-d":
            data = words[index + 1]
            index += 2
        else:
            url = word
            index += 1
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    return client.open(
        parts.path, method=method, headers=headers, data=data, query_string=parts.query
    )


def test_readme_cli_examples(readme_env: EmulatorServer, tmp_path: Path) -> None:
    namespace = run_blocks_until("def crawled_pages")
    run_id = readme_env.emulator.create_run(
        "site-crawl", output={"pages": ["/"]}, payload={"maxPages": 5}
    )
    runner = namespace["app"].test_cli_runner()
    commands = [
        line.removeprefix("$ ").split()
        for block in readme_blocks("console")
        for line in block.splitlines()
        if line.startswith("$ flask")
    ]
    assert len(commands) == 5
    for words in commands:
        assert words[:3] == ["flask", "--app", "myapp"]
        arguments = [run_id if word == EXAMPLE_RUN_ID else word for word in words[3:]]
        result = runner.invoke(args=arguments)
        assert result.exit_code == 0, (arguments, result.output)
    assert json.loads((tmp_path / "crawl.json").read_text()) == {"pages": ["/"]}


def test_readme_standalone_emulator(tmp_path: Path) -> None:
    block = block_containing(readme_blocks("sh"), "python -m flask_trigger_outputs.emulator")
    serve_line, app_line = block.splitlines()
    (tmp_path / "mytasks.py").write_text(
        "TASKS = {'site-crawl': lambda payload, context: {'pages': ['/']}}\n"
    )
    port = free_port()
    command = [
        sys.executable if word == "python" else word
        for word in shlex.split(serve_line.replace("8787", str(port)))
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in printed

        settings = dict(word.split("=", 1) for word in shlex.split(app_line) if "=" in word)
        app = Flask("myapp")
        app.config.update(
            TRIGGER_API_URL=settings["TRIGGER_API_URL"].replace("8787", str(port)),
            TRIGGER_SECRET_KEY=settings["TRIGGER_SECRET_KEY"],
        )
        TriggerOutputs(app)
        client = app.test_client()
        run_id = client.post("/api/crawl", json={}).get_json()["runId"]
        for _ in range(100):
            body = client.get("/api/crawl", query_string={"runId": run_id}).get_json()
            if body["isFinished"]:
                break
            time.sleep(0.05)
        assert body["output"] == {"pages": ["/"]}
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
