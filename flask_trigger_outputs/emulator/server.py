"""Serve an emulator on 127.0.0.1 from a background thread."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .app import Emulator
from .faults import RESET_LINGER

logger = logging.getLogger(__name__)


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without the per-request access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _EmulatorWSGIServer(ThreadedWSGIServer):
    """A threaded werkzeug server that can reset a connection on purpose.

    When the emulator has set a zero SO_LINGER on a connection to inject a
    reset, the socket is closed without the usual shutdown, so the kernel
    sends a TCP reset instead of a normal end of stream.
    """

    daemon_threads = True

    def shutdown_request(self, request: Any) -> None:
        try:
            linger = request.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, len(RESET_LINGER))
        except OSError:
            linger = b""
        if linger == RESET_LINGER or (len(linger) == 8 and struct.unpack("ii", linger) == (1, 0)):
            request.close()
            return
        super().shutdown_request(request)


class EmulatorServer:
    """Run an :class:`Emulator` on ``127.0.0.1`` in a background thread.

    Use it as a context manager::

        with EmulatorServer(Emulator()) as server:
            requests.get(f"{server.url}/api/v3/runs/run_x", headers=...)

    :param emulator: the emulator to serve; a new one when None.
    :param port: the port to listen on; 0 picks a free one.
    """

    def __init__(self, emulator: Emulator | None = None, *, port: int = 0) -> None:
        #: The emulator being served.
        self.emulator = emulator if emulator is not None else Emulator()
        self._server = _EmulatorWSGIServer(
            "127.0.0.1", port, self.emulator, handler=_QuietRequestHandler
        )
        self._thread: threading.Thread | None = None
        #: The base URL, for example ``http://127.0.0.1:54321``.
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.emulator.base_url = self.url

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_port)

    @property
    def secret_key(self) -> str:
        """The API key the emulator accepts."""
        return self.emulator.secret_key

    def start(self) -> EmulatorServer:
        """Start serving in a daemon thread and return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="trigger-emulator-server",
                daemon=True,
            )
            self._thread.start()
            logger.info("Trigger.dev emulator listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` or KeyboardInterrupt."""
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        """Stop serving, close the socket and stop the emulator's workers."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self.emulator.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
