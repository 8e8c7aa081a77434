"""The example app under gunicorn, polled by 200 concurrent clients.

gunicorn runs ``example_app:create_app()`` with 4 threaded workers on a free
port of 127.0.0.1, against the emulator that this test runs in process so
that its counters can be read. A client process polls ``GET /api/crawl``
for a mix of running and finished runs from 200 keep-alive connections for
30 seconds, or until 200,000 requests, whichever comes first. Every poll
must succeed with the right body. Each worker's cache is in its own memory,
so an offloaded output may be downloaded once per worker and no more.

The test writes requests served, errors, downloads per output and worker,
and peak memory per worker to docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from reliability_report import markdown_table, write_section

from flask_trigger_outputs.emulator import Emulator, EmulatorServer

REPO = Path(__file__).resolve().parents[1]
SECRET_KEY = "tr_dev_loadtest4b8e1c7d2a9f"

WORKERS = 4
THREADS = 8
CLIENTS = 200
DURATION = 30.0
MAX_REQUESTS = 200_000

#: Finished runs whose output is offloaded, finished runs with an inline
#: output, and runs still executing.
OFFLOADED_RUNS = 20
INLINE_RUNS = 10
RUNNING_RUNS = 10
#: Pages per offloaded output, about 100 bytes each: about 64 KB.
OFFLOADED_PAGES = 640
INLINE_PAGES = 5


def crawl_output(site: str, pages: int) -> dict[str, Any]:
    return {
        "site": site,
        "pages": [
            {"url": f"https://{site}/page/{i}", "title": f"Page {i}", "words": 50 + i % 400}
            for i in range(pages)
        ],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PeakMemory:
    """Sample the resident memory of gunicorn's workers with psutil and keep
    the peak of each, until stopped."""

    def __init__(self, master_pid: int, interval: float = 0.25) -> None:
        self.peaks: dict[int, int] = {}
        self._master = psutil.Process(master_pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                workers = self._master.children()
            except psutil.NoSuchProcess:
                return
            for worker in workers:
                try:
                    rss = worker.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peaks[worker.pid] = max(self.peaks.get(worker.pid, 0), rss)
            self._stop.wait(self._interval)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(SECRET_KEY, offload_threshold=16 * 1024)) as server:
        yield server


@pytest.fixture
def gunicorn(emulator: EmulatorServer, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """Serve the example app with gunicorn; yield its URL, the master's pid
    and the folder where each worker writes its counters on exit."""
    port = free_port()
    stats_dir = tmp_path / "worker-stats"
    stats_dir.mkdir()
    environment = {
        **os.environ,
        "TRIGGER_API_URL": emulator.url,
        "TRIGGER_SECRET_KEY": SECRET_KEY,
        "LOAD_STATS_DIR": str(stats_dir),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(WORKERS),
        "--threads",
        str(THREADS),
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(REPO),
        "--config",
        "python:tests.load_gunicorn",
        "--log-level",
        "warning",
        "--graceful-timeout",
        "10",
        "example_app:create_app()",
    ]
    process = subprocess.Popen(command, env=environment, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        yield url, process.pid, stats_dir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode}")
        try:
            requests.get(f"{url}/api/crawl", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.1)  # not listening yet
    raise RuntimeError("gunicorn did not start within 20 s")


@pytest.mark.timeout(90)
def test_load_example_app_under_gunicorn(
    emulator: EmulatorServer, gunicorn: tuple[str, int, Path], tmp_path: Path
) -> None:
    url, master_pid, stats_dir = gunicorn
    emu = emulator.emulator
    runs: list[dict[str, Any]] = []
    for i in range(OFFLOADED_RUNS):
        site = f"offloaded-{i}.example"
        run_id = emu.create_run(
            "site-crawl", output=crawl_output(site, OFFLOADED_PAGES), offload_output=True
        )
        runs.append({"id": run_id, "finished": True, "site": site, "pages": OFFLOADED_PAGES})
    for i in range(INLINE_RUNS):
        site = f"inline-{i}.example"
        run_id = emu.create_run(
            "site-crawl", output=crawl_output(site, INLINE_PAGES), offload_output=False
        )
        runs.append({"id": run_id, "finished": True, "site": site, "pages": INLINE_PAGES})
    for _ in range(RUNNING_RUNS):
        run_id = emu.create_run("site-crawl", status="EXECUTING", metadata={"progress": 0.5})
        runs.append({"id": run_id, "finished": False})
    plan = {
        "url": url,
        "clients": CLIENTS,
        "duration": DURATION,
        "max_requests": MAX_REQUESTS,
        "runs": runs,
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan), "utf-8")
    emu.stats.reset()

    with PeakMemory(master_pid) as memory:
        completed = subprocess.run(
            [sys.executable, str(REPO / "tests" / "load_clients.py"), str(plan_path)],
            capture_output=True,
            text=True,
            timeout=DURATION + 40,
            check=True,
        )
    result = json.loads(completed.stdout)
    counts: dict[str, int] = result["counts"]

    # Stop gunicorn now, so each worker writes its counters.
    os.kill(master_pid, signal.SIGTERM)
    psutil.Process(master_pid).wait(timeout=20)
    workers = [json.loads(path.read_text("utf-8")) for path in sorted(stats_dir.iterdir())]

    served = counts.get("finished", 0) + counts.get("running", 0)
    errors = served - counts.get("ok", 0)
    downloads = emu.stats.downloads
    offloaded_keys = [key for key in downloads if key.endswith("output.json")]

    assert served > 0
    assert errors == 0, counts
    assert len(workers) == WORKERS
    assert len(offloaded_keys) == OFFLOADED_RUNS
    # Each worker downloads each offloaded output at most once.
    assert max(downloads.values()) <= WORKERS
    for worker in workers:
        assert worker["downloads"] <= OFFLOADED_RUNS
    assert len(memory.peaks) >= WORKERS

    write_load_report(result["seconds"], served, errors, counts, workers, memory.peaks, downloads)


WORKER_COLUMNS = [
    "worker",
    "downloads",
    "downloads per output",
    "cache hits",
    "cache misses",
    "coalesced polls",
]


def write_load_report(
    seconds: float,
    served: int,
    errors: int,
    counts: dict[str, int],
    workers: list[dict[str, int]],
    peaks: dict[int, int],
    downloads: Any,
) -> None:
    worker_rows: list[list[object]] = [
        [
            f"worker {index + 1}",
            worker["downloads"],
            f"{worker['downloads'] / OFFLOADED_RUNS:.2f}",
            worker["hits"],
            worker["misses"],
            worker["coalesced"],
        ]
        for index, worker in enumerate(sorted(workers, key=lambda w: -w["downloads"]))
    ]
    peak_mib = sorted(round(peak / 2**20) for peak in peaks.values())
    per_key = sorted(downloads.values())
    summary: list[list[object]] = [
        ["requests served", f"{served} in {seconds:.0f} s ({served / seconds:.0f}/s)"],
        ["errors (non-200, connection errors, wrong bodies)", errors],
        [
            "polls of finished / running runs",
            f"{counts.get('finished', 0)} / {counts.get('running', 0)}",
        ],
        [
            "requests repeated on a new connection after a keep-alive close",
            counts.get("keep-alive retries", 0),
        ],
        [
            "downloads per offloaded output, all workers",
            f"min {per_key[0]}, max {per_key[-1]} (limit {WORKERS}, one per worker)",
        ],
        ["peak memory per worker (RSS, MiB)", ", ".join(str(mib) for mib in peak_mib)],
    ]
    body = f"""\
Written by `tests/test_load.py`: `example_app:create_app()` under gunicorn with
{WORKERS} workers of {THREADS} threads (`gthread`), against the emulator in the test
process on 127.0.0.1. {CLIENTS} clients in a separate process poll `GET /api/crawl`
over keep-alive connections for {DURATION:.0f} s, each request for a random run among
{OFFLOADED_RUNS} finished runs with an offloaded output of about 64 KB,
{INLINE_RUNS} finished runs with an inline output and {RUNNING_RUNS} executing runs.
Default extension settings: 64 MiB cache per worker, polls of an unfinished run
coalesced for 1 s. Measured on {os.cpu_count()} CPUs ({platform.machine()}, Python
{platform.python_version()}); request rates depend on the machine, the counts of
errors and downloads should not.

{markdown_table(["figure", "value"], summary)}

Per worker, from the counters each worker writes when it exits (downloads per
output is the worker's downloads divided by the {OFFLOADED_RUNS} offloaded outputs):

{markdown_table(WORKER_COLUMNS, worker_rows)}
"""
    write_section("load", body)
