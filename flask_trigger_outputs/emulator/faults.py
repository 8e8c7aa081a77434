"""Failures that tests inject into the emulator's later responses.

Each control applies to the next N matching requests and then disarms
itself, so a test can make the first two downloads fail and the third succeed,
then check that a client retried. Controls live on a Python handle
(``emulator.faults``), never on an HTTP route, so nothing outside the test
process can switch them on. Every method is thread-safe.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

#: SO_LINGER with a zero timeout: closing the socket sends a TCP reset
#: instead of a normal shutdown.
RESET_LINGER = struct.pack("ii", 1, 0)

#: How long a reset waits after the partial body, so the bytes leave the
#: send buffer before the reset discards it.
_RESET_FLUSH_DELAY = 0.05


@dataclass
class ApiFailure:
    """An injected API failure: the status, headers and JSON body of the response."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class DownloadFault:
    """An injected fault in a download's body.

    ``kind`` is ``"truncate"`` (send ``keep_bytes`` then close while the
    Content-Length promises more), ``"reset"`` (send ``keep_bytes`` then reset
    the TCP connection) or ``"slow"`` (send ``keep_bytes``, pause ``delay``
    seconds, then send the rest).
    """

    kind: Literal["truncate", "reset", "slow"]
    keep_bytes: int
    delay: float = 0.0


@dataclass
class _ApiRule:
    remaining: int
    path_prefix: str | None
    make: Callable[[], ApiFailure]


@dataclass
class _StorageRule:
    remaining: int
    status: int
    method: str | None


@dataclass
class _DownloadRule:
    remaining: int
    fault: DownloadFault


class Faults:
    """Failure controls for one emulator.

    :param expire_urls: callback that expires every presigned URL issued so
        far; the emulator passes its object store's ``expire_all``.
    """

    def __init__(self, expire_urls: Callable[[], None]) -> None:
        self._expire_urls = expire_urls
        self._lock = threading.Lock()
        self._api_rules: list[_ApiRule] = []
        self._storage_failures: list[_StorageRule] = []
        self._download_faults: list[_DownloadRule] = []
        self._bad_signatures = 0
        self._signing_failures = 0
        self._redirects = 0
        self._api_latency = 0.0
        self._storage_latency = 0.0

    # -- API -------------------------------------------------------------

    def fail_api(
        self,
        times: int = 1,
        status: int = 500,
        *,
        path_prefix: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Fail the next ``times`` API requests with ``status``.

        The body is ``{"error": "..."}`` like Trigger.dev's own errors.

        :param path_prefix: only requests whose path starts with this prefix
            count, for example ``"/api/v3/runs/"``; None matches every API
            route (storage requests never match).
        :param should_retry: when not None, send ``x-should-retry: true`` or
            ``false``, the header the official SDK obeys over the status.
        """
        headers = {}
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"

        def make() -> ApiFailure:
            return ApiFailure(
                status, dict(headers), {"error": f"Emulated failure with status {status}"}
            )

        self._add_api_rule(times, path_prefix, make)

    def rate_limit(
        self, times: int = 1, *, reset_after: float = 0.2, path_prefix: str | None = None
    ) -> None:
        """Reject the next ``times`` API requests with 429 Too Many Requests.

        The response carries ``x-ratelimit-reset``, the Unix time in
        milliseconds when the limit resets: ``reset_after`` seconds after the
        response, on the real wall clock because the client compares it with
        its own clock.

        :param path_prefix: as in :meth:`fail_api`.
        """

        def make() -> ApiFailure:
            reset_ms = int((time.time() + reset_after) * 1000)
            headers = {
                "x-ratelimit-limit": "1500",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(reset_ms),
            }
            return ApiFailure(429, headers, {"error": "Rate limit exceeded"})

        self._add_api_rule(times, path_prefix, make)

    def latency(self, api: float = 0.0, storage: float = 0.0) -> None:
        """Delay every later API and storage response by the given seconds.

        Unlike the other controls this one stays in force until
        :meth:`clear` or another call to :meth:`latency`.
        """
        with self._lock:
            self._api_latency = api
            self._storage_latency = storage

    def fail_url_signing(self, times: int = 1) -> None:
        """Leave the presigned URLs out of the next ``times`` run retrievals.

        A run whose output or payload is offloaded then comes back with
        neither ``output`` nor ``outputPresignedUrl`` (and likewise for the
        payload), which is what Trigger.dev returns when it fails to sign a
        URL. Inline data is unaffected.
        """
        with self._lock:
            self._signing_failures += times

    # -- storage ---------------------------------------------------------

    def fail_storage(
        self, times: int = 1, status: int = 503, *, method: str | None = "GET"
    ) -> None:
        """Fail the next ``times`` storage requests with ``status``.

        The body is an S3-style XML error whose code matches the status
        (``SlowDown`` for 503, ``InternalError`` for 500, ``NoSuchKey`` for
        404, ``AccessDenied`` for 403).

        :param method: only requests with this method count: ``"GET"`` for
            downloads, ``"PUT"`` for uploads, None for both.
        """
        with self._lock:
            self._storage_failures.append(_StorageRule(times, status, method))

    def truncate_downloads(self, times: int = 1, keep_bytes: int = 100) -> None:
        """Cut the next ``times`` downloads short.

        The response promises the full Content-Length, sends the first
        ``keep_bytes`` bytes, and closes the connection.
        """
        self._add_download_fault(times, DownloadFault("truncate", keep_bytes))

    def reset_downloads(self, times: int = 1, keep_bytes: int = 100) -> None:
        """Reset the connection in the middle of the next ``times`` downloads.

        The response sends the first ``keep_bytes`` bytes, then the emulator
        closes the socket with a TCP reset, so the client sees a
        connection-reset error rather than a clean end of stream. Under a
        server other than :class:`~flask_trigger_outputs.emulator.EmulatorServer`
        the connection may close normally instead.
        """
        self._add_download_fault(times, DownloadFault("reset", keep_bytes))

    def slow_downloads(self, times: int = 1, delay: float = 2.0, keep_bytes: int = 100) -> None:
        """Pause in the middle of the next ``times`` downloads.

        The response sends the first ``keep_bytes`` bytes, waits ``delay``
        seconds, then sends the rest. A client whose read timeout is shorter
        than ``delay`` times out.
        """
        self._add_download_fault(times, DownloadFault("slow", keep_bytes, delay))

    def bad_signatures(self, times: int = 1) -> None:
        """Reject the next ``times`` storage requests as if their signature were wrong.

        They get 403 with the S3 code ``SignatureDoesNotMatch`` even when the
        URL is valid.
        """
        with self._lock:
            self._bad_signatures += times

    def redirect_downloads(self, times: int = 1) -> None:
        """Redirect the next ``times`` storage GET requests to themselves.

        The response is ``307 Temporary Redirect`` to the same path and
        query on the same host, with a ``Set-Cookie`` header, so a test can
        check that a client follows the redirect without sending back the
        cookie or adding credentials.
        """
        with self._lock:
            self._redirects += times

    def expire_urls_now(self) -> None:
        """Expire every presigned URL issued so far.

        Requests with those URLs get 403 ``AccessDenied`` "Request has
        expired"; URLs issued afterwards work normally.
        """
        self._expire_urls()

    # -- reset -----------------------------------------------------------

    def clear(self) -> None:
        """Disarm every pending control and remove the latency.

        URLs that :meth:`expire_urls_now` expired stay expired.
        """
        with self._lock:
            self._api_rules.clear()
            self._storage_failures.clear()
            self._download_faults.clear()
            self._bad_signatures = 0
            self._signing_failures = 0
            self._redirects = 0
            self._api_latency = 0.0
            self._storage_latency = 0.0

    # -- used by the emulator ------------------------------------------

    @property
    def api_latency(self) -> float:
        """Seconds added to every API response."""
        with self._lock:
            return self._api_latency

    @property
    def storage_latency(self) -> float:
        """Seconds added to every storage response."""
        with self._lock:
            return self._storage_latency

    def take_api_failure(self, path: str) -> ApiFailure | None:
        """Consume and return the first armed API failure matching ``path``."""
        with self._lock:
            for rule in self._api_rules:
                if rule.remaining > 0 and (
                    rule.path_prefix is None or path.startswith(rule.path_prefix)
                ):
                    rule.remaining -= 1
                    break
            else:
                return None
            self._api_rules = [r for r in self._api_rules if r.remaining > 0]
        return rule.make()

    def take_storage_failure(self, method: str) -> int | None:
        """Consume an armed storage failure for ``method`` and return its status."""
        with self._lock:
            for rule in self._storage_failures:
                if rule.remaining > 0 and rule.method in (None, method):
                    rule.remaining -= 1
                    self._storage_failures = [r for r in self._storage_failures if r.remaining > 0]
                    return rule.status
        return None

    def take_bad_signature(self) -> bool:
        """Consume one armed signature rejection; return whether there was one."""
        with self._lock:
            if self._bad_signatures > 0:
                self._bad_signatures -= 1
                return True
        return False

    def take_redirect(self) -> bool:
        """Consume one armed download redirect; return whether there was one."""
        with self._lock:
            if self._redirects > 0:
                self._redirects -= 1
                return True
        return False

    def take_signing_failure(self) -> bool:
        """Consume one armed URL-signing failure; return whether there was one."""
        with self._lock:
            if self._signing_failures > 0:
                self._signing_failures -= 1
                return True
        return False

    def take_download_fault(self) -> DownloadFault | None:
        """Consume and return the first armed download fault."""
        with self._lock:
            for rule in self._download_faults:
                if rule.remaining > 0:
                    rule.remaining -= 1
                    self._download_faults = [r for r in self._download_faults if r.remaining > 0]
                    return rule.fault
        return None

    def _add_api_rule(
        self, times: int, path_prefix: str | None, make: Callable[[], ApiFailure]
    ) -> None:
        with self._lock:
            self._api_rules.append(_ApiRule(times, path_prefix, make))

    def _add_download_fault(self, times: int, fault: DownloadFault) -> None:
        with self._lock:
            self._download_faults.append(_DownloadRule(times, fault))


def faulty_body(data: bytes, fault: DownloadFault, sock: socket.socket | None) -> Iterator[bytes]:
    """Yield a response body that misbehaves as ``fault`` describes.

    :param sock: the client connection (werkzeug's ``werkzeug.socket``), used
        to reset it; without one a reset degrades to a truncated body.
    """
    head = data[: fault.keep_bytes]
    if head:
        yield head

    if fault.kind == "slow":
        time.sleep(fault.delay)
        yield data[fault.keep_bytes :]
        return

    if fault.kind == "reset" and sock is not None:
        time.sleep(_RESET_FLUSH_DELAY)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
        # werkzeug treats a ConnectionError from the body as a dropped
        # connection and ends the request quietly.
        raise ConnectionResetError("Emulated connection reset")
