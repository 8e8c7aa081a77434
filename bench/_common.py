"""Helpers shared by the benchmark scripts: real packets, the emulator, and
an app served over HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

#: Version of the official SDK the comparisons run against.
SDK_VERSION = "4.8.3"
#: Folder of the SDK install and the generated packets, kept between runs.
CACHE_DIR = Path(
    os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "flask-trigger-outputs")
)
#: The script that runs the official SDK's ``runs.retrieve()`` and prints one
#: JSON line per run; ``SDK_RETRIEVE_SCRIPT`` overrides its location.
SDK_RETRIEVE_SCRIPT = Path(
    os.environ.get("SDK_RETRIEVE_SCRIPT", REPO_DIR.parent / "shared" / "tools" / "sdk_retrieve.mjs")
)

MB = 1024 * 1024


def tsdk_dir() -> Path:
    """Return the folder holding ``@trigger.dev/sdk``, installing it with npm
    on first use. ``TSDK_DIR`` overrides the location."""
    folder = Path(os.environ.get("TSDK_DIR", CACHE_DIR / "tsdk"))
    if not (folder / "node_modules" / "@trigger.dev" / "sdk").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is not installed; it is needed to install @trigger.dev/sdk.")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(folder), f"@trigger.dev/sdk@{SDK_VERSION}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return folder


def real_packet(size: int) -> tuple[bytes, str]:
    """Return a crawl output of about ``size`` bytes written by the official
    serializer (``stringifyIO`` of ``@trigger.dev/core``), and its data type.

    The packet is generated once with Node and kept in :data:`CACHE_DIR`.
    """
    path = CACHE_DIR / "packets" / f"crawl_{size}.body"
    type_path = path.with_name(path.name + ".type")
    if not path.exists() or not type_path.exists():
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node is not installed; it is needed to write a real packet.")
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TSDK_DIR": str(tsdk_dir())}
        subprocess.run(
            [node, str(BENCH_DIR / "make_packet.mjs"), str(path), str(size)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    return path.read_bytes(), type_path.read_text().strip()


def create_offloaded_run(emulator: Any, task_id: str, size: int) -> str:
    """Create a completed run of ``task_id`` whose output is a real packet of
    about ``size`` bytes, stored behind a presigned URL."""
    from flask_trigger_outputs.emulator import StoredPacket

    data, data_type = real_packet(size)
    return emulator.create_run(task_id, output=StoredPacket(data, data_type), offload_output=True)  # type: ignore[no-any-return]


def make_app(server: Any, **config: Any) -> Any:
    """Create a Flask app with the extension configured against an emulator."""
    return make_app_for(server.url, server.secret_key, **config)


def make_app_for(api_url: str, secret_key: str, **config: Any) -> Any:
    """Create a Flask app with the extension configured against ``api_url``."""
    from flask import Flask

    from flask_trigger_outputs.extension import TriggerOutputs

    app = Flask("bench")
    app.config.update(TRIGGER_API_URL=api_url, TRIGGER_SECRET_KEY=secret_key, **config)
    TriggerOutputs(app)
    return app


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 with werkzeug's threaded server and yield
    its base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


class HttpClient:
    """A keep-alive HTTP/1.1 client on one connection to 127.0.0.1.

    The benchmarks use :mod:`http.client` rather than requests because
    requests reads a body in 10 KB pieces, which adds about 3 ms per MB on
    the client side and would hide what the server does.
    """

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._connection = http.client.HTTPConnection(host, int(port), timeout=60)

    def get(self, path: str) -> tuple[int, bytes]:
        """Send a GET and return the status and the whole body."""
        response = self.open(path)
        return response.status, response.read()

    def open(self, path: str) -> http.client.HTTPResponse:
        """Send a GET and return the response, with its body still unread."""
        self._connection.request("GET", path)
        return self._connection.getresponse()

    def close(self) -> None:
        self._connection.close()


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000.0
