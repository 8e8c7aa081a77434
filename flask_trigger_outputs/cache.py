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
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from cachetools import TTLCache

from .errors import PacketDecodeError
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


class CacheStats:
    """Thread-safe counters of cache and download activity.

    ``hits`` and ``misses`` count lookups of finished data; ``shared``
    counts callers that waited for another caller's identical load instead
    of starting their own; ``coalesced`` counts polls of unfinished runs
    answered from another poll's API call; ``downloads`` and
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


def _dump_json(value: Any, *, run_id: str | None) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as error:
        raise PacketDecodeError(
            f"The packet of run {run_id!r} contains NaN or Infinity, which JSON cannot represent.",
            run_id=run_id,
        ) from error
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JavaScript strings may hold one) has no UTF-8
        # form, so escape every non-ASCII character as \uXXXX instead.
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


@dataclass(frozen=True)
class CachedPacket:
    """A finished run's output or payload, stored in the form a response
    needs.

    ``json_body`` is the UTF-8 JSON text of the packet's JSON form, which is
    what Trigger.dev's ``parsePacketAsJson`` returns (the ``json`` half of a
    superjson packet). It is serialized once, when the entry is built, so a
    cache hit copies bytes into the response instead of decoding and
    serializing the value again. ``data`` keeps the packet as stored, for the
    raw route and for typed decoding.

    The typed value is not cached: Python containers are mutable and a value
    shared between requests could be changed by one of them. :meth:`decode`
    builds a fresh value from ``data`` on every call, without any request.
    """

    #: The packet bytes as stored by Trigger.dev.
    data: bytes
    #: The packet's media type, such as ``application/super+json``.
    data_type: str
    #: Whether the packet was downloaded from a presigned URL (``True``) or
    #: arrived inline in the run (``False``).
    offloaded: bool
    #: UTF-8 JSON text of the packet's JSON form.
    json_body: bytes

    @classmethod
    def from_data(
        cls,
        data: bytes,
        content_type: str | None,
        *,
        offloaded: bool,
        run_id: str | None = None,
    ) -> CachedPacket:
        """Decode a packet once and build its cache entry.

        Only the JSON form is decoded here. A typed read through
        :meth:`decode` decodes ``data`` again, so the first typed read of
        an uncached packet decodes it twice.

        :param data: the packet bytes.
        :param content_type: the packet's data type or the download's
            ``Content-Type`` header; ``None`` means ``application/json``.
        :param offloaded: whether the packet came from a presigned URL.
        :param run_id: the run, named in error messages.
        :raises PacketDecodeError: if the bytes do not match the data type.
        :raises StorageError: if the bytes are a storage host's XML error.
        """
        from .decoding import decode_packet, media_type

        value = decode_packet(data, content_type, as_json=True, run_id=run_id)
        return cls(
            data=data,
            data_type=media_type(content_type),
            offloaded=offloaded,
            json_body=_dump_json(value, run_id=run_id),
        )

    @classmethod
    def from_json_value(cls, value: Any, *, run_id: str | None = None) -> CachedPacket:
        """Build the entry of an inline packet that the API already returned
        as a JSON value.

        :param value: the decoded ``output`` or ``payload`` field of a run.
        :param run_id: the run, named in error messages.
        """
        body = _dump_json(value, run_id=run_id)
        return cls(data=body, data_type="application/json", offloaded=False, json_body=body)

    @property
    def size(self) -> int:
        """The size of the stored packet in bytes."""
        return len(self.data)

    @property
    def nbytes(self) -> int:
        """The memory this entry takes, counting shared buffers once."""
        total = sys.getsizeof(self.data)
        if self.json_body is not self.data:
            total += sys.getsizeof(self.json_body)
        return total + 200  # the dataclass instance and its attributes

    def decode(self, *, as_json: bool = False, run_id: str | None = None) -> Any:
        """Build a fresh Python value from the cached bytes.

        :param as_json: return the JSON form instead of the typed value.
        :param run_id: the run, named in error messages.
        """
        if as_json:
            return json.loads(self.json_body)

        from .decoding import decode_packet

        return decode_packet(self.data, self.data_type, run_id=run_id)


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

    Callers hold the owning :class:`OutputCache` lock around every use.
    """

    def __init__(
        self, maxsize: int, ttl: float, timer: Callable[[], float], stats: CacheStats
    ) -> None:
        super().__init__(maxsize, ttl, timer=timer, getsizeof=_entry_size)
        self._stats = stats

    def popitem(self) -> tuple[Hashable, _Entry]:
        item = super().popitem()
        self._stats.increment("evictions")
        logger.debug("Evicted %r (%d bytes) from the cache to make room.", item[0], item[1].size)
        return item

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
