"""Count presigned downloads when several gunicorn workers poll the same
finished outputs, with and without the shared cache tier on Redis.

    python bench/bench_shared_cache.py [--workers 4] [--runs 20] [--polls 100]

The emulator runs in this process, so its counters can be read directly, on
a free port of 127.0.0.1. A throwaway ``redis-server`` runs on another free
port, and gunicorn serves the app below as a subprocess. Every run is
COMPLETED with an offloaded output, and each of them is polled ``--polls``
times through ``GET /api/crawl`` from 16 client threads, round by round, so
several workers miss the same output at the same moment. Each phase starts
a new gunicorn, so every worker starts with an empty cache.

Without the shared tier each worker downloads each output once (up to
workers x runs downloads). With it, the goal is one download per output. The
last line is the figure that ``bench/run.py`` reads: the downloads with the
shared tier.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from flask import Flask

from flask_trigger_outputs.extension import TriggerOutputs

REPO = Path(__file__).resolve().parents[1]
SECRET_KEY = "tr_dev_bench_shared_cache"
CLIENT_THREADS = 16


def create_app() -> Flask:
    """Build the app that gunicorn serves: the extension against the
    emulator, with the shared tier when ``TRIGGER_OUTPUTS_REDIS_URL`` is set
    in the environment."""
    app = Flask("bench_shared_cache")
    app.config["TRIGGER_OUTPUTS_REDIS_URL"] = os.environ.get("TRIGGER_OUTPUTS_REDIS_URL") or None
    TriggerOutputs(app)
    return app


def make_output(index: int, size: int) -> dict[str, object]:
    """Return a crawl result of about ``size`` bytes of JSON."""
    rng = random.Random(index)
    words = ["garden", "soil", "compost", "roses", "pruning", "water", "seeds", "shade"]
    pages: list[dict[str, object]] = []
    total = 0
    while total < size:
        text = " ".join(rng.choice(words) for _ in range(60))
        page = {
            "url": f"https://example.com/blog/{index}/{len(pages)}",
            "title": f"Page {len(pages)} of site {index}",
            "words": 60,
            "text": text,
        }
        pages.append(page)
        total += len(json.dumps(page))
    return {"site": f"site-{index}.example.com", "pages": pages}


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PhaseResult:
    downloads: int
    retrieves: int
    failed_polls: int
    seconds: float


class Gunicorn:
    """gunicorn serving :func:`create_app` on a free loopback port."""

    def __init__(self, workers: int, environment: dict[str, str]) -> None:
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--threads",
            "4",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            str(REPO),
            "--log-level",
            "warning",
            "bench.bench_shared_cache:create_app()",
        ]
        self.process = subprocess.Popen(command, env={**os.environ, **environment})

    def wait_until_ready(self, run_id: str) -> None:
        """Wait until the app responds, using the status route, which
        downloads nothing."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {self.process.returncode}")
            try:
                response = requests.get(
                    f"{self.url}/api/crawl/status", params={"runId": run_id}, timeout=5
                )
                if response.status_code == 200:
                    return
            except requests.ConnectionError:
                pass  # not listening yet
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not respond within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def run_phase(
    emulator: object, run_ids: list[str], polls: int, workers: int, environment: dict[str, str]
) -> PhaseResult:
    """Start gunicorn, poll every run ``polls`` times and count what the
    emulator served."""
    server = Gunicorn(workers, environment)
    try:
        server.wait_until_ready(run_ids[0])
        emulator.stats.reset()  # type: ignore[attr-defined]

        def poll(run_id: str) -> bool:
            # A new connection per poll: a kept-alive connection stays with the
            # worker that accepted it, and a few workers could serve everything.
            response = requests.get(
                f"{server.url}/api/crawl",
                params={"runId": run_id},
                headers={"Connection": "close"},
                timeout=60,
            )
            if response.status_code != 200:
                return False
            body = response.json()
            return body.get("outputOffloaded") is True and bool(body["output"]["pages"])

        started = time.perf_counter()
        jobs = [run_id for _ in range(polls) for run_id in run_ids]
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            results = list(pool.map(poll, jobs))
        seconds = time.perf_counter() - started

        stats = emulator.stats  # type: ignore[attr-defined]
        return PhaseResult(
            downloads=sum(stats.downloads.values()),
            retrieves=stats.api_calls["retrieve"],
            failed_polls=results.count(False),
            seconds=seconds,
        )
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default: 4)")
    parser.add_argument("--runs", type=int, default=20, help="finished runs (default: 20)")
    parser.add_argument("--polls", type=int, default=100, help="polls per run (default: 100)")
    parser.add_argument(
        "--output-kib", type=int, default=256, help="size of each output in KiB (default: 256)"
    )
    args = parser.parse_args()

    redis_executable = shutil.which("redis-server")
    if redis_executable is None:
        print("redis-server is not installed; install it to run this benchmark.", file=sys.stderr)
        return 2

    sys.path.insert(0, str(REPO / "tests"))
    from redis_server import RedisServer

    from flask_trigger_outputs.emulator import Emulator, EmulatorServer

    emulator = Emulator(SECRET_KEY)
    with EmulatorServer(emulator) as api, RedisServer(redis_executable) as redis_server:
        run_ids = [
            emulator.create_run(
                "site-crawl", output=make_output(i, args.output_kib * 1024), offload_output=True
            )
            for i in range(args.runs)
        ]
        base = {"TRIGGER_API_URL": api.url, "TRIGGER_SECRET_KEY": SECRET_KEY}

        without = run_phase(
            emulator, run_ids, args.polls, args.workers, {**base, "TRIGGER_OUTPUTS_REDIS_URL": ""}
        )
        with_shared = run_phase(
            emulator,
            run_ids,
            args.polls,
            args.workers,
            {**base, "TRIGGER_OUTPUTS_REDIS_URL": redis_server.url},
        )

        client = redis_server.client()
        stored = [client.strlen(key) for key in client.scan_iter("trigger-outputs:value:*")]
        client.close()

    polls = args.runs * args.polls
    print(
        f"{args.workers} gunicorn workers, {args.runs} finished runs with offloaded outputs of"
        f" about {args.output_kib} KiB, {args.polls} polls each ({polls} requests)"
    )
    print(f"{'shared tier':<12} {'downloads':>9} {'retrieves':>9} {'failed':>6} {'seconds':>8}")
    for name, result in (("off", without), ("on (Redis)", with_shared)):
        print(
            f"{name:<12} {result.downloads:>9} {result.retrieves:>9}"
            f" {result.failed_polls:>6} {result.seconds:>8.2f}"
        )
    if stored:
        print(
            f"Redis holds {len(stored)} values of {sum(stored) // len(stored)} bytes on average"
            " (compressed packet and JSON form)"
        )
    print(f"downloads without the shared tier: {without.downloads}")
    print(f"downloads with the shared tier: {with_shared.downloads}")
    return 1 if without.failed_polls or with_shared.failed_polls else 0


if __name__ == "__main__":
    sys.exit(main())
