"""Counters and a request log that tests read to check what a client sent."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field

#: Requests kept in the log; older ones are dropped first.
MAX_LOGGED_REQUESTS = 10_000


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, with the status of its response.

    ``kind`` is ``"api"``, ``"storage"`` or ``"unknown"``; ``route`` names the
    API route (``"retrieve"``, ``"trigger"``, ``"upload_url"``,
    ``"download_url"``) or the storage operation (``"download"``,
    ``"upload"``). ``headers`` keys are lower case.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    kind: str
    route: str | None
    status: int


@dataclass
class Stats:
    """Counters and a request log of everything the emulator served.

    Every method is thread-safe.

    Counters count requests as they arrive, including the ones that got
    an injected failure, so a test can count a client's retries.
    """

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _api_calls: Counter[str] = field(default_factory=Counter)
    _downloads: Counter[str] = field(default_factory=Counter)
    _uploads: Counter[str] = field(default_factory=Counter)
    _requests: deque[RecordedRequest] = field(
        default_factory=lambda: deque(maxlen=MAX_LOGGED_REQUESTS)
    )

    @property
    def api_calls(self) -> Counter[str]:
        """API requests by route name.

        Routes are ``retrieve``, ``trigger``, ``upload_url`` and ``download_url``.
        """
        with self._lock:
            return Counter(self._api_calls)

    @property
    def downloads(self) -> Counter[str]:
        """Storage GET requests by object key, whatever their outcome."""
        with self._lock:
            return Counter(self._downloads)

    @property
    def uploads(self) -> Counter[str]:
        """Storage PUT requests by object key, whatever their outcome."""
        with self._lock:
            return Counter(self._uploads)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every logged request, oldest first (at most :data:`MAX_LOGGED_REQUESTS`)."""
        with self._lock:
            return list(self._requests)

    def storage_requests(self) -> list[RecordedRequest]:
        """Return the logged requests that went to the object store."""
        return [r for r in self.requests if r.kind == "storage"]

    def reset(self) -> None:
        """Set every counter to zero and empty the request log."""
        with self._lock:
            self._api_calls.clear()
            self._downloads.clear()
            self._uploads.clear()
            self._requests.clear()

    def count_api_call(self, route: str) -> None:
        """Count one request to the API route ``route``."""
        with self._lock:
            self._api_calls[route] += 1

    def count_download(self, key: str) -> None:
        """Count one storage GET of ``key``."""
        with self._lock:
            self._downloads[key] += 1

    def count_upload(self, key: str) -> None:
        """Count one storage PUT of ``key``."""
        with self._lock:
            self._uploads[key] += 1

    def log(self, request: RecordedRequest) -> None:
        """Append ``request`` to the log."""
        with self._lock:
            self._requests.append(request)
