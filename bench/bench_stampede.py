"""32 concurrent requests for one cold 5 MB output.

32 threads, each with its own connection, are released together by a
barrier and GET the same finished run from the app's route while nothing is
cached. The emulator counts the requests it received. Target: exactly one
run retrieval and one download, and every client gets the same body.
"""

from __future__ import annotations

import threading
import time

from _common import MB, HttpClient, create_offloaded_run, make_app, serve

from flask_trigger_outputs.emulator import Emulator, EmulatorServer
from flask_trigger_outputs.extension import get_state

CLIENTS = 32


def main() -> None:
    with EmulatorServer(Emulator()) as server:
        run_id = create_offloaded_run(server.emulator, "site-crawl", 5 * MB)
        app = make_app(server)
        barrier = threading.Barrier(CLIENTS)
        results: list[tuple[int, bytes]] = []
        lock = threading.Lock()

        with serve(app) as base_url:
            clients = [HttpClient(base_url) for _ in range(CLIENTS)]

            def fetch(client: HttpClient) -> None:
                barrier.wait()
                result = client.get(f"/api/crawl?runId={run_id}")
                with lock:
                    results.append(result)

            threads = [threading.Thread(target=fetch, args=(client,)) for client in clients]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            elapsed = time.perf_counter() - started
            for client in clients:
                client.close()

        retrievals = server.emulator.stats.api_calls["retrieve"]
        downloads = sum(server.emulator.stats.downloads.values())
        counts = get_state(app).cache.snapshot()

    statuses = sorted({status for status, _ in results})
    bodies = {body for _, body in results}
    print(
        f"{len(results)} responses in {elapsed * 1000:.0f} ms, statuses {statuses},"
        f" {len(bodies)} distinct body of {len(next(iter(bodies))):,} bytes"
    )
    print(
        f"cache: {counts['misses']} misses, {counts['shared']} shared loads, {counts['hits']} hits"
    )
    if len(results) != CLIENTS or statuses != [200] or len(bodies) != 1:
        raise SystemExit("Not every client got the same successful response.")
    print(f"retrievals, downloads: {retrievals} {downloads}")


if __name__ == "__main__":
    main()
