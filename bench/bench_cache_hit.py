"""A cached GET of a finished run with a 2 MB offloaded output, versus a plain
Flask route that returns the same response bytes from memory.

Both routes live in one app, served over HTTP on 127.0.0.1 by werkzeug's
threaded server, and are requested alternately on one keep-alive
connection.
The figure is the ratio of the median request times. Target: at most 1.3x.
"""

from __future__ import annotations

import time

from _common import MB, HttpClient, create_offloaded_run, make_app, median_ms, serve
from flask import Response

from flask_trigger_outputs.emulator import Emulator, EmulatorServer

ROUNDS = 200


def timed_get(client: HttpClient, path: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    status, body = client.get(path)
    elapsed = time.perf_counter() - started
    assert status == 200, body[:200]
    return elapsed, body


def main() -> None:
    with EmulatorServer(Emulator()) as server:
        run_id = create_offloaded_run(server.emulator, "site-crawl", 2 * MB)
        app = make_app(server)
        plain_body: list[bytes] = []

        @app.get("/plain")
        def plain() -> Response:
            return Response(plain_body[0], mimetype="application/json")

        with serve(app) as base_url:
            client = HttpClient(base_url)
            route_url = f"/api/crawl?runId={run_id}"
            _, body = timed_get(client, route_url)  # fills the cache
            plain_body.append(body)
            api_requests = len(server.emulator.stats.requests)
            print(f"output packet: 2 MB; response body: {len(body):,} bytes")

            for _ in range(10):
                timed_get(client, route_url)
                timed_get(client, "/plain")

            route_times, plain_times = [], []
            for _ in range(ROUNDS):
                elapsed, route_body = timed_get(client, route_url)
                route_times.append(elapsed)
                elapsed, _ = timed_get(client, "/plain")
                plain_times.append(elapsed)
            client.close()

            assert route_body == body
            assert len(server.emulator.stats.requests) == api_requests, "a cache hit sent a request"

    route_ms = median_ms(route_times)
    plain_ms = median_ms(plain_times)
    print(f"cached route: {route_ms:.2f} ms, plain route: {plain_ms:.2f} ms (medians of {ROUNDS})")
    print(f"cache hit / plain Flask route: {route_ms / plain_ms:.2f}")


if __name__ == "__main__":
    main()
