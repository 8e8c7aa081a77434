"""The counters of cache and download activity that
:class:`~flask_trigger_outputs.cache.OutputCache` keeps."""

from __future__ import annotations

import threading


class CacheStats:
    """Thread-safe counters of cache and download activity.

    ``hits`` and ``misses`` count lookups of finished data; ``shared``
    counts callers that waited for another caller's identical load instead
    of starting their own; ``coalesced`` counts polls of unfinished runs
    served by another poll's API call; ``downloads`` and
    ``bytes_downloaded`` count presigned downloads; ``retries`` counts
    repeated HTTP attempts; ``evictions`` counts entries removed to make
    room, ``expirations`` entries removed because their time ran out, and
    ``skipped`` values too large to cache.
    """

    #: The names of the counters, in the order :meth:`snapshot` lists them.
    FIELDS = (
        "hits",
        "misses",
        "shared",
        "coalesced",
        "downloads",
        "bytes_downloaded",
        "retries",
        "evictions",
        "expirations",
        "skipped",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.FIELDS, 0)

    def increment(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name``.

        :raises KeyError: if ``name`` is not one of :attr:`FIELDS`.
        """
        if name not in self._counts:
            raise KeyError(f"Unknown counter {name!r}; expected one of {', '.join(self.FIELDS)}.")
        with self._lock:
            self._counts[name] += amount

    def record_download(self, size: int) -> None:
        """Count one finished download of ``size`` bytes."""
        with self._lock:
            self._counts["downloads"] += 1
            self._counts["bytes_downloaded"] += size

    def record_retry(self) -> None:
        """Count one repeated HTTP attempt."""
        self.increment("retries")

    def snapshot(self) -> dict[str, int]:
        """Return a copy of all counters, read at one instant."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            for name in self._counts:
                self._counts[name] = 0
