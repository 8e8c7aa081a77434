"""200 polls of a finished run with a 1 MB offloaded output: this package
versus the official SDK's ``runs.retrieve()``, against the same emulator.

A poll by this package is a GET of the app's route over HTTP on 127.0.0.1
(werkzeug's threaded server, one keep-alive connection), which returns the
run and its output as a browser polling the app receives them.
A poll by the SDK is one ``runs.retrieve()`` call in Node, which retrieves
the run and downloads and decodes the output every time; its time is the
``elapsed_ms`` the SDK script measures around each call, so Node's start-up
is not counted. The figure is the SDK's total time divided by ours.
Target: at least 20x.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from _common import (
    MB,
    SDK_RETRIEVE_SCRIPT,
    HttpClient,
    create_offloaded_run,
    make_app,
    serve,
    tsdk_dir,
)

from flask_trigger_outputs.emulator import Emulator, EmulatorServer
from flask_trigger_outputs.extension import get_state

POLLS = 200


def sdk_polls(server: EmulatorServer, run_id: str) -> float:
    """Run ``runs.retrieve()`` POLLS times in one Node process and return the
    total of the times it measured, in seconds."""
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed; it is needed to run the official SDK.")
    command = [node, str(SDK_RETRIEVE_SCRIPT), server.url, server.secret_key, *[run_id] * POLLS]
    env = {**os.environ, "TSDK_DIR": str(tsdk_dir())}
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=True
    )

    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    assert len(lines) == POLLS, completed.stderr[-500:]
    for line in lines:
        assert line["error"] is None, line["error"]
        assert not line["output_is_undefined"], "the SDK lost the output"
    return sum(line["elapsed_ms"] for line in lines) / 1000.0


def our_polls(base_url: str, run_id: str) -> float:
    """GET the route POLLS times and return the total time in seconds."""
    client = HttpClient(base_url)
    path = f"/api/crawl?runId={run_id}"
    try:
        started = time.perf_counter()
        for _ in range(POLLS):
            status, body = client.get(path)
            assert status == 200
            assert len(body) > 500_000
        return time.perf_counter() - started
    finally:
        client.close()


def main() -> None:
    with EmulatorServer(Emulator()) as server:
        run_id = create_offloaded_run(server.emulator, "site-crawl", 1 * MB)
        app = make_app(server)

        with serve(app) as base_url:
            ours = our_polls(base_url, run_id)
        our_requests = len(server.emulator.stats.requests)
        counts = get_state(app).cache.snapshot()

        sdk = sdk_polls(server, run_id)
        sdk_requests = len(server.emulator.stats.requests) - our_requests

    print(
        f"ours: {ours * 1000:.0f} ms for {POLLS} polls, {our_requests} requests to the emulator"
        f" ({counts['downloads']} download)"
    )
    print(f"SDK:  {sdk * 1000:.0f} ms for {POLLS} polls, {sdk_requests} requests to the emulator")
    print(f"SDK time / our time: {sdk / ours:.1f}")


if __name__ == "__main__":
    main()
