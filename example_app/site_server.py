"""Serve the bundled sample website on 127.0.0.1 from a background thread."""

from __future__ import annotations

import logging
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


#: Folder of the bundled sample site, written by ``python -m example_app.generate_site``.
SITE_DIR = Path(__file__).resolve().parent / "sample_site"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static file handler that logs through :mod:`logging` at DEBUG instead of stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sample site: " + format, *args)


class SampleSiteServer:
    """A static file server for a folder, bound to ``127.0.0.1`` on a free port.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    :param directory: the folder to serve, the bundled sample site by default.
    :param port: the port to bind, ``0`` for a free one.
    """

    def __init__(self, directory: Path = SITE_DIR, *, port: int = 0) -> None:
        if not (directory / "index.html").is_file():
            raise FileNotFoundError(
                f"No index.html in {directory}; generate the sample site with"
                " 'python -m example_app.generate_site'."
            )
        handler = partial(_QuietHandler, directory=str(directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL of the site, ending with a slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> SampleSiteServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sample-site-server", daemon=True
        )
        self._thread.start()
        logger.debug("Serving the sample site at %s", self.url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> SampleSiteServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
