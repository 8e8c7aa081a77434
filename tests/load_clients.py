"""Poll an app's routes from many concurrent clients; used by tests/test_load.py.

    python tests/load_clients.py PLAN.json

The plan names the base URL, the number of clients, the duration and the
maximum number of requests, and lists the runs with what each poll must
return. Every client is a thread with its own keep-alive connection, like a
browser tab polling a status page. A poll counts as an error when the
status is not 200, the connection fails, or the body does not match the
run: a finished run must carry its output (checked by its ``site`` and
number of pages), a running run no output. The result is one JSON object
on standard output.

It runs in its own process so that the clients do not share a GIL with the
emulator that the test runs in process.
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit


def check_body(body: Any, run: dict[str, Any]) -> str | None:
    """Return what is wrong with a poll's body, or None."""
    if not isinstance(body, dict) or body.get("runId") != run["id"]:
        return "wrong run"
    if run["finished"]:
        output = body.get("output")
        if body.get("isSuccess") is not True or not isinstance(output, dict):
            return "finished run without output"
        if output.get("site") != run["site"] or len(output.get("pages", ())) != run["pages"]:
            return "wrong output"
    elif "output" in body or body.get("isFinished") is not False:
        return "running run reported finished"
    return None


def run_client(
    plan: dict[str, Any],
    deadline: float,
    budget: list[int],
    lock: threading.Lock,
    tally: Counter[str],
) -> None:
    parts = urlsplit(plan["url"])
    rng = random.Random()
    connection: http.client.HTTPConnection | None = None
    reused = False
    local: Counter[str] = Counter()

    def poll(run: dict[str, Any]) -> tuple[int, bytes]:
        nonlocal connection, reused
        if connection is None:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            reused = False
        connection.request("GET", f"/api/crawl?runId={run['id']}")
        response = connection.getresponse()
        data = response.read()
        reused = True
        return response.status, data

    while time.monotonic() < deadline:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        run = rng.choice(plan["runs"])
        try:
            try:
                status, data = poll(run)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed a kept-alive connection as the request
                # went out. HTTP clients retry an idempotent request once on
                # a new connection then, as browsers do.
                local["keep-alive retries"] += 1
                assert connection is not None
                connection.close()
                connection = None
                status, data = poll(run)
            if status != 200:
                local[f"status {status}"] += 1
            else:
                problem = check_body(json.loads(data), run)
                local[problem or "ok"] += 1
        except (OSError, http.client.HTTPException, ValueError) as error:
            local[f"exception {type(error).__name__}"] += 1
            if connection is not None:
                connection.close()
            connection = None
        local["finished" if run["finished"] else "running"] += 1

    if connection is not None:
        connection.close()
    with lock:
        tally.update(local)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        plan = json.load(file)

    tally: Counter[str] = Counter()
    lock = threading.Lock()
    budget = [plan["max_requests"]]
    started = time.monotonic()
    deadline = started + plan["duration"]
    threads = [
        threading.Thread(target=run_client, args=(plan, deadline, budget, lock, tally))
        for _ in range(plan["clients"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    print(json.dumps({"seconds": time.monotonic() - started, "counts": dict(tally)}))


if __name__ == "__main__":
    main()
