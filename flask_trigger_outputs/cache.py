"""The in-process cache of finished runs and their packets.

A finished run's output and payload never change, so once downloaded they
are kept in a :class:`cachetools.TTLCache` bounded by the total size of its
entries in bytes, not by their number. Entries are keyed by the API URL, the
environment, the run id and the kind of data (:class:`CacheKey`), never by a
presigned URL, because presigned URLs expire after a few minutes.

:class:`OutputCache` wraps the TTLCache as cachetools requires for threaded
servers: one lock around every access, never held while an HTTP request
runs. On top of it, :meth:`OutputCache.get_or_load` merges concurrent loads
of one key into a single call, and :meth:`OutputCache.coalesce` lets polls of
a run that is still executing share one API call for a short window.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, TypeVar

from cachetools import TTLCache

from .cache_stats import CacheStats as CacheStats
from .cached_packet import CachedPacket as CachedPacket
from .singleflight import SingleFlight

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Default upper bound of the total size of cached entries, in bytes.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Default time an entry stays in the cache after it was stored, in seconds.
DEFAULT_TTL = 600.0
#: Default largest entry, as a share of ``max_bytes``; larger ones are not cached.
DEFAULT_MAX_ENTRY_SHARE = 0.25
#: Default window during which polls of an unfinished run share one API call, in seconds.
DEFAULT_COALESCE_WINDOW = 1.0

#: Share of ``max_bytes`` that the short-lived poll results may take in total.
#: They live for one coalescing window only, so they need little room.
_COALESCE_SHARE = 0.125


class CacheKey(NamedTuple):
    """The identity of a cached value.

    :param api_url: the Trigger.dev API base URL, without a trailing slash.
    :param environment: an id of the project environment, from
        :func:`environment_id`. Runs of different environments never share
        entries even when their ids are equal.
    :param run_id: the run id.
    :param kind: what is cached for the run, such as ``"run"``,
        ``"output"`` or ``"payload"``.
    """

    api_url: str
    environment: str
    run_id: str
    kind: str


def environment_id(secret_key: str, branch: str | None = None) -> str:
    """Derive a stable, non-secret id of the environment a secret key
    belongs to, for use in :class:`CacheKey`.

    The key itself is never stored in a cache key, because cache keys may be
    logged or shown by debugging tools. The id is the first 16 hex digits of
    the SHA-256 of the key, followed by the preview branch when there is one.

    :param secret_key: the Trigger.dev secret key.
    :param branch: the preview branch sent as ``x-trigger-branch``, if any.
    """
    digest = hashlib.sha256(secret_key.encode("utf-8")).hexdigest()[:16]
    return digest if not branch else f"{digest}:{branch}"


def deep_sizeof(value: Any) -> int:
    """Estimate the memory taken by a JSON-like value: dicts, lists, tuples,
    strings, bytes and numbers, counting each object once.

    Objects of other types count as their shallow :func:`sys.getsizeof`.
    """
    seen: set[int] = set()
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return total


class _Entry(NamedTuple):
    value: Any
    size: int


def _entry_size(entry: _Entry) -> int:
    return entry.size


class _CountingTTLCache(TTLCache[Hashable, _Entry]):
    """A TTLCache that reports evictions and expirations to :class:`CacheStats`.

    Callers hold the owning :class:`OutputCache` lock around every use, so
    evictions are only recorded here, and logged by the caller after it
    releases the lock (see :meth:`take_evicted`).
    """

    def __init__(
        self, maxsize: int, ttl: float, timer: Callable[[], float], stats: CacheStats
    ) -> None:
        super().__init__(maxsize, ttl, timer=timer, getsizeof=_entry_size)
        self._stats = stats
        self._evicted: list[tuple[Hashable, int]] = []

    def popitem(self) -> tuple[Hashable, _Entry]:
        item = super().popitem()
        self._stats.increment("evictions")
        self._evicted.append((item[0], item[1].size))
        return item

    def take_evicted(self) -> list[tuple[Hashable, int]]:
        """Return the key and size of each entry evicted since the last
        call, and forget them."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def expire(self, time: float | None = None) -> list[tuple[Hashable, _Entry]]:
        expired = super().expire(time)
        if expired:
            self._stats.increment("expirations", len(expired))
        return expired


class OutputCache:
    """A thread-safe, size-bounded TTL cache with single-flight loading.

    :param max_bytes: upper bound of the total size of entries, in bytes.
        ``0`` disables storing; concurrent identical loads are still merged.
    :param ttl: seconds an entry stays valid after it was stored.
    :param max_entry_share: the largest entry as a share of ``max_bytes``,
        between 0 and 1. Larger values are returned but not stored, so one
        huge output cannot flush everything else.
    :param coalesce_window: seconds during which polls of the same
        unfinished run share one API call. ``0`` turns coalescing off.
    :param timer: the clock, in seconds. Tests pass a fake clock to drive
        expiry without sleeping.
    :param stats: counters to update; a new :class:`CacheStats` by default.
        Pass one shared object to let the HTTP clients count downloads and
        retries in the same place.
    :param api_url: the Trigger.dev API base URL that :meth:`key` puts in
        every key.
    :param environment: the environment id (see :func:`environment_id`)
        that :meth:`key` puts in every key.
    :raises ValueError: if a bound is negative or the share is not in
        ``(0, 1]``.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL,
        max_entry_share: float = DEFAULT_MAX_ENTRY_SHARE,
        coalesce_window: float = DEFAULT_COALESCE_WINDOW,
        timer: Callable[[], float] = time.monotonic,
        stats: CacheStats | None = None,
        api_url: str = "",
        environment: str = "",
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more bytes, got {max_bytes!r}.")
        if ttl <= 0:
            raise ValueError(f"ttl must be more than 0 seconds, got {ttl!r}.")
        if not 0 < max_entry_share <= 1:
            raise ValueError(
                f"max_entry_share must be more than 0 and at most 1, got {max_entry_share!r}."
            )
        if coalesce_window < 0:
            raise ValueError(f"coalesce_window must be 0 or more seconds, got {coalesce_window!r}.")

        self.max_bytes = max_bytes
        self.ttl = ttl
        self.max_entry_share = max_entry_share
        self.max_entry_bytes = int(max_bytes * max_entry_share)
        self.coalesce_window = coalesce_window
        self.stats = stats if stats is not None else CacheStats()
        self.api_url = api_url.rstrip("/")
        self.environment = environment

        self._lock = threading.Lock()
        self._timer = timer
        self._entries = _CountingTTLCache(max(max_bytes, 1), ttl, timer, self.stats)
        self._recent_max_bytes = int(max_bytes * _COALESCE_SHARE)
        self._recent: TTLCache[Hashable, _Entry] | None = None
        if coalesce_window > 0:
            self._recent = TTLCache(
                max(self._recent_max_bytes, 1), coalesce_window, timer=timer, getsizeof=_entry_size
            )
        self._flights: SingleFlight[Hashable, Any] = SingleFlight()

    def key(self, run_id: str, kind: str) -> CacheKey:
        """Build the key of ``kind`` (``"run"``, ``"output"``, ``"payload"``)
        of a run, in this cache's API URL and environment."""
        return CacheKey(self.api_url, self.environment, run_id, kind)

    @property
    def enabled(self) -> bool:
        """Whether values are stored at all (``max_bytes`` is above 0)."""
        return self.max_bytes > 0

    def get(self, key: Hashable) -> Any | None:
        """Return the cached value for ``key``, or ``None`` if it is missing
        or expired. Does not count a hit or a miss."""
        with self._lock:
            entry = self._entries.get(key)
        return None if entry is None else entry.value

    def put(self, key: Hashable, value: Any, size: int | None = None) -> bool:
        """Store ``value`` under ``key``, replacing any earlier value.

        :param size: the value's size in bytes; estimated with
            :func:`deep_sizeof` when not given (``CachedPacket.nbytes`` for a
            :class:`CachedPacket`).
        :return: whether the value was stored. A value larger than
            ``max_bytes * max_entry_share`` is not stored.
        """
        if not self.enabled:
            return False
        if size is None:
            size = value.nbytes if isinstance(value, CachedPacket) else deep_sizeof(value)
        if size > self.max_entry_bytes:
            self.stats.increment("skipped")
            logger.debug(
                "Not caching %r: %d bytes is more than the %d bytes allowed per entry.",
                key,
                size,
                self.max_entry_bytes,
            )
            return False

        with self._lock:
            self._entries[key] = _Entry(value, size)
            evicted = self._entries.take_evicted()

        for evicted_key, evicted_size in evicted:
            logger.debug(
                "Evicted %r (%d bytes) from the cache to make room.", evicted_key, evicted_size
            )
        return True

    def discard(self, key: Hashable) -> None:
        """Remove ``key`` if it is cached."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Remove every entry, including the short-lived poll results."""
        with self._lock:
            self._entries.clear()
            if self._recent is not None:
                self._recent.clear()

    def get_or_load(
        self,
        key: Hashable,
        load: Callable[[], T],
        *,
        size: Callable[[T], int] | None = None,
        store: Callable[[T], bool] | None = None,
    ) -> T:
        """Return the cached value for ``key``, or load it once however many
        threads ask at the same time.

        The first caller that misses runs ``load`` without holding the lock;
        callers that arrive while it runs wait and receive its value or its
        exception. A value is stored only after ``load`` returned, so a
        failure is never cached and the next request tries again.

        :param load: produces the value; called at most once per miss.
        :param size: the value's size in bytes; see :meth:`put`.
        :param store: decides whether a loaded value may be cached, for
            example only when its run has finished. All values by default.
        :raises Exception: whatever ``load`` raised.
        """
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None:
            self.stats.increment("hits")
            return entry.value  # type: ignore[no-any-return]

        def lead() -> tuple[T, bool]:
            # Another leader may have stored the value between the lookup
            # above and this call becoming the leader.
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None:
                return entry.value, True

            self.stats.increment("misses")
            value = load()
            if store is None or store(value):
                self.put(key, value, None if size is None else size(value))
            return value, False

        (value, was_cached), shared = self._flights.do(("load", key), lead)
        if shared:
            self.stats.increment("shared")
        elif was_cached:
            self.stats.increment("hits")
        return value  # type: ignore[no-any-return]

    def coalesce(
        self, key: Hashable, load: Callable[[], T], *, size: Callable[[T], int] | None = None
    ) -> T:
        """Share one ``load`` call among polls of ``key`` that arrive within
        ``coalesce_window`` seconds of each other.

        Meant for runs that have not finished: their state changes, so the
        result is kept only for the window, in a separate small area
        (one eighth of ``max_bytes``) that never pushes finished entries
        out. Polls that arrive while a call runs wait for it. The returned
        value is shared between callers and must not be modified.

        :param load: fetches the current state; called at most once per
            window while polls keep arriving.
        :param size: the value's size in bytes; estimated with
            :func:`deep_sizeof` when not given.
        :raises Exception: whatever ``load`` raised. Failures are not kept.
        """
        recent = self._recent
        if recent is None:
            return load()

        with self._lock:
            entry = recent.get(key)
        if entry is not None:
            self.stats.increment("coalesced")
            return entry.value  # type: ignore[no-any-return]

        def lead() -> tuple[T, bool]:
            with self._lock:
                entry = recent.get(key)
            if entry is not None:
                return entry.value, True

            value = load()
            value_size = deep_sizeof(value) if size is None else size(value)
            if value_size <= self._recent_max_bytes * self.max_entry_share:
                with self._lock:
                    recent[key] = _Entry(value, value_size)
            return value, False

        (value, was_recent), shared = self._flights.do(("poll", key), lead)
        if shared or was_recent:
            self.stats.increment("coalesced")
        return value  # type: ignore[no-any-return]

    def waiters(self, key: Hashable) -> int:
        """Return how many callers of :meth:`get_or_load` wait for another
        caller's load of ``key`` right now."""
        return self._flights.waiters(("load", key))

    def snapshot(self) -> dict[str, int]:
        """Return the counters together with the current ``entries`` and
        ``bytes`` in the cache, and its ``max_bytes``."""
        with self._lock:
            self._entries.expire()
            entries = len(self._entries)
            used = int(self._entries.currsize)
        counts = self.stats.snapshot()
        counts.update(entries=entries, bytes=used, max_bytes=self.max_bytes)
        return counts
