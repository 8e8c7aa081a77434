"""Start a real, throwaway ``redis-server`` on a loopback port for tests.

The server keeps nothing on disk (``--save ""``, ``--appendonly no``), works
in its own temporary directory and listens on 127.0.0.1 only. Tests stop it,
pause it and start it again on the same port to see how the shared cache
behaves while Redis is down or hanging.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

#: Seconds to wait for a starting server to reply to ``PING``.
START_TIMEOUT = 10.0


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1 that can be stopped and
    started again on the same port.

    :param executable: path of the ``redis-server`` binary.
    :param port: the port to listen on; a free one when not given.
    """

    def __init__(self, executable: str, *, port: int | None = None) -> None:
        self.executable = executable
        self.port = port if port is not None else find_free_port()
        self._tempdir = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """Return a new client for checks from the test, with no retries."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)

    def start(self) -> None:
        """Start the server and wait until it replies to ``PING``.

        :raises RuntimeError: the server exited or did not reply within
            :data:`START_TIMEOUT` seconds.
        """
        if self.running:
            return
        directory = Path(self._tempdir.name)
        command = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
            "--daemonize",
            "no",
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    log = Path(self._tempdir.name, "redis.log")
                    text = log.read_text() if log.exists() else ""
                    raise RuntimeError(
                        f"redis-server exited with status {self._process.returncode}"
                        f" on port {self.port}: {text[-500:]}"
                    )
                try:
                    if probe.ping():
                        return
                except redis.RedisError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not reply to PING on port {self.port}"
                        f" within {START_TIMEOUT} s"
                    )
                time.sleep(0.01)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop the server and wait for the process to exit."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self.resume()
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of failing."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._tempdir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
