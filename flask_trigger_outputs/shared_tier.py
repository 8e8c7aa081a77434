"""Put the Redis tier behind the in-process cache.

:class:`TieredOutputCache` is an :class:`~flask_trigger_outputs.cache.OutputCache`
whose loads of finished runs' packets go through a
:class:`~flask_trigger_outputs.shared_cache.SharedCache` first. A miss in the
process looks in Redis. A miss in Redis takes the cross-process lock, so one
worker downloads and the others read the packet it stored. Both tiers use the
same key and the same TTL.

Only packets (:class:`~flask_trigger_outputs.cached_packet.CachedPacket`),
inline or offloaded, go to Redis. They never change once they exist, and
storing bytes needs no pickling. Run records and polls of unfinished runs
stay in the process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .cache import CacheKey, OutputCache, environment_id
from .cached_packet import CachedPacket
from .shared_cache import SharedCache

if TYPE_CHECKING:
    from .config import TriggerOutputsConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Kinds of :class:`~flask_trigger_outputs.cache.CacheKey` that hold packets
#: of finished runs, which the shared tier stores.
SHARED_KINDS = frozenset({"output", "payload"})

# First byte of a packed packet. A reader that finds another version treats
# the value as a miss, so a new format never misreads an old one.
_PACKET_FORMAT = 1


def shared_key(key: CacheKey) -> str:
    """Build the Redis key of a cache key.

    The parts are joined with ``|``. Kinds and validated run ids never
    contain it, the environment id (which may end with a preview branch name)
    has ``%`` and ``|`` percent-encoded, and the API URL comes last, so no two
    keys map to the same string.
    """
    environment = key.environment.replace("%", "%25").replace("|", "%7C")
    return f"{key.kind}|{environment}|{key.run_id}|{key.api_url}"


def pack_packet(packet: CachedPacket) -> bytes:
    """Serialize a cached packet to bytes for Redis.

    The layout is one format byte, a 4-byte big-endian header length, a JSON
    header, the packet data and, unless it equals the data, the JSON body.
    """
    same_body = packet.json_body == packet.data
    header = json.dumps(
        {
            "dataType": packet.data_type,
            "offloaded": packet.offloaded,
            "dataSize": len(packet.data),
            "jsonBodyIsData": same_body,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    parts = [bytes([_PACKET_FORMAT]), len(header).to_bytes(4, "big"), header, packet.data]
    if not same_body:
        parts.append(packet.json_body)
    return b"".join(parts)


def unpack_packet(raw: bytes) -> CachedPacket | None:
    """Read bytes written by :func:`pack_packet`.

    :returns: the packet, or ``None`` if the bytes are of another format
        version or malformed.
    """
    if len(raw) < 5 or raw[0] != _PACKET_FORMAT:
        return None
    header_end = 5 + int.from_bytes(raw[1:5], "big")
    try:
        header = json.loads(raw[5:header_end])
        data_type = header["dataType"]
        offloaded = header["offloaded"]
        data_end = header_end + header["dataSize"]
        same_body = header["jsonBodyIsData"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(data_type, str) or not isinstance(offloaded, bool):
        return None
    if not isinstance(data_end, int) or data_end > len(raw):
        return None

    data = raw[header_end:data_end]
    json_body = data if same_body else raw[data_end:]
    return CachedPacket(data=data, data_type=data_type, offloaded=offloaded, json_body=json_body)


def _encode_packet(value: Any) -> bytes | None:
    return pack_packet(value) if isinstance(value, CachedPacket) else None


class TieredOutputCache(OutputCache):
    """An :class:`~flask_trigger_outputs.cache.OutputCache` with a shared Redis
    tier behind it for the packets of finished runs.

    Lookups and single-flight inside the process work as in the parent class.
    When a packet key misses there, the load goes through
    :meth:`SharedCache.get_or_load
    <flask_trigger_outputs.shared_cache.SharedCache.get_or_load>` with the
    same TTL: a hit in Redis fills the process cache without a download, and
    a miss downloads once across all processes.

    :param shared: the Redis tier.
    :param shared_kinds: key kinds whose values go to Redis.
    :param options: passed on to :class:`~flask_trigger_outputs.cache.OutputCache`.
    """

    def __init__(
        self,
        shared: SharedCache,
        *,
        shared_kinds: Iterable[str] = SHARED_KINDS,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.shared = shared
        self.shared_kinds = frozenset(shared_kinds)

    def get_or_load(
        self,
        key: Hashable,
        load: Callable[[], T],
        *,
        size: Callable[[T], int] | None = None,
        store: Callable[[T], bool] | None = None,
    ) -> T:
        if isinstance(key, CacheKey) and key.kind in self.shared_kinds:
            load = self._through_shared(key, load, store)
        return super().get_or_load(key, load, size=size, store=store)

    def _through_shared(
        self, key: CacheKey, load: Callable[[], T], store: Callable[[T], bool] | None
    ) -> Callable[[], T]:
        def encode(value: T) -> bytes | None:
            if store is not None and not store(value):
                return None
            return _encode_packet(value)

        def decode(raw: bytes) -> T | None:
            packet = unpack_packet(raw)
            if packet is None:
                logger.warning(
                    "Ignoring the shared cache value of %s of run %s: it is not a packet"
                    " in format %d.",
                    key.kind,
                    key.run_id,
                    _PACKET_FORMAT,
                )
            return packet  # type: ignore[return-value]

        def load_through_shared() -> T:
            return self.shared.get_or_load(
                shared_key(key), load, self.ttl, encode=encode, decode=decode
            )

        return load_through_shared

    def snapshot(self) -> dict[str, int]:
        """Return the in-process counters of the parent class, plus the
        shared tier's counters prefixed with ``redis_``."""
        counts = super().snapshot()
        stats = self.shared.stats
        counts.update(
            redis_hits=stats.hits,
            redis_misses=stats.misses,
            redis_stores=stats.stores,
            redis_loads=stats.loads,
            redis_lock_waits=stats.lock_waits,
            redis_errors=stats.errors,
        )
        return counts


def create_output_cache(config: TriggerOutputsConfig) -> OutputCache:
    """Create the cache of finished runs and their packets for one app.

    With ``TRIGGER_OUTPUTS_REDIS_URL`` set, the cache has a shared tier on
    Redis, which needs the ``redis`` extra. Otherwise it lives in this
    process. With ``TRIGGER_OUTPUTS_CACHE_MAX_BYTES`` at 0 the process
    stores nothing, not even polls for ``TRIGGER_OUTPUTS_POLL_COALESCE``,
    but concurrent loads and polls of one run still share one call, and the
    counters are kept.

    :returns: a :class:`TieredOutputCache` when the shared tier is on, an
        :class:`~flask_trigger_outputs.cache.OutputCache` otherwise.
    """
    options: dict[str, Any] = {
        "max_bytes": config.cache_max_bytes,
        "ttl": config.cache_ttl,
        "max_entry_share": config.cache_max_entry_share,
        "coalesce_window": config.poll_coalesce,
        "api_url": config.api_url,
        "environment": environment_id(config.secret_key, config.preview_branch),
    }
    redis_config = config.redis
    if redis_config.url is None:
        return OutputCache(**options)

    shared = SharedCache.from_url(
        redis_config.url,
        socket_timeout=redis_config.timeout,
        connect_timeout=redis_config.timeout,
        prefix=redis_config.prefix,
        lock_timeout=redis_config.lock_timeout,
        retry_after=redis_config.retry_after,
        max_value_size=2 * config.max_output_size + 4096,
    )
    return TieredOutputCache(shared, **options)
