"""Peak memory of the app while 8 clients stream a 10 MB output, cache off.

The app runs in its own process (this script with ``--serve``), with
``TRIGGER_OUTPUTS_CACHE_MAX_BYTES = 0``, so the emulator and the clients do
not count. After a warm-up request, its peak resident set size (``VmHWM`` in
``/proc/PID/status``) is reset through ``/proc/PID/clear_refs``. Then 8
clients, each on its own connection, read the output of one finished run
through ``GET /api/crawl?runId=...&format=raw`` in 64 KB pieces. The figure
is the peak RSS after the transfer minus the RSS before it, in MB.
Target: less than 30 MB. Linux only.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from _common import HttpClient, create_offloaded_run, make_app_for, real_packet, serve

from flask_trigger_outputs.emulator import Emulator, EmulatorServer

CLIENTS = 8
#: Requested size of the output packet. The generated packet comes out at
#: about 10.2 MB, under the default TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE (10 MiB).
OUTPUT_SIZE = 10_000_000


def read_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status has no {field} line.")


def stream(base_url: str, path: str) -> int:
    """GET ``path`` and read the body in 64 KB pieces; return its size."""
    client = HttpClient(base_url)
    try:
        response = client.open(path)
        assert response.status == 200, response.read(500)
        size = 0
        while piece := response.read(64 * 1024):
            size += len(piece)
        return size
    finally:
        client.close()


def serve_app(api_url: str, secret_key: str) -> None:
    """Serve the app with the cache off until standard input closes."""
    app = make_app_for(api_url, secret_key, TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0)
    with serve(app) as base_url:
        print(base_url, flush=True)
        sys.stdin.read()


def main() -> None:
    with EmulatorServer(Emulator()) as server:
        large_run = create_offloaded_run(server.emulator, "site-crawl", OUTPUT_SIZE)
        small_run = create_offloaded_run(server.emulator, "site-crawl", 600 * 1024)
        stored = server.emulator.get_run(large_run)
        assert "outputPresignedUrl" in stored

        app_process = subprocess.Popen(
            [sys.executable, __file__, "--serve", server.url, server.secret_key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert app_process.stdout is not None
            base_url = app_process.stdout.readline().strip()
            pid = app_process.pid

            # Load every code path once before measuring.
            stream(base_url, f"/api/crawl?runId={small_run}&format=raw")
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before_kb = read_status_kb(pid, "VmRSS")

            sizes: list[int] = []
            lock = threading.Lock()
            barrier = threading.Barrier(CLIENTS)

            def fetch() -> None:
                barrier.wait()
                size = stream(base_url, f"/api/crawl?runId={large_run}&format=raw")
                with lock:
                    sizes.append(size)

            threads = [threading.Thread(target=fetch) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)

            peak_kb = read_status_kb(pid, "VmHWM")
        finally:
            if app_process.stdin is not None:
                app_process.stdin.close()
            app_process.wait(30)

        downloads = sum(server.emulator.stats.downloads.values())

    packet_size = len(real_packet(OUTPUT_SIZE)[0])
    assert sizes == [packet_size] * CLIENTS, sizes
    growth_mb = (peak_kb - before_kb) / 1024
    print(f"{CLIENTS} clients x {packet_size:,} bytes relayed; {downloads} storage downloads")
    print(f"app RSS before: {before_kb / 1024:.1f} MB, peak during: {peak_kb / 1024:.1f} MB")
    print(f"peak RSS growth (MB): {growth_mb:.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_app(sys.argv[2], sys.argv[3])
    else:
        main()
