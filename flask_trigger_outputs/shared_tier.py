"""Put the Redis tier behind the in-process cache.

:class:`TieredOutputCache` is an :class:`~flask_trigger_outputs.cache.OutputCache`
whose loads of finished runs' packets go through a
:class:`~flask_trigger_outputs.shared_cache.SharedCache` first. A miss in the
process looks in Redis. A miss in Redis takes the cross-process lock, so one
worker downloads and the others read the packet it stored. Both tiers use the
same key and the same TTL.

Only packets (:class:`~flask_trigger_outputs.cached_packet.CachedPacket`) go to Redis.
They never change once a run has finished, and storing bytes needs no
pickling. Run records and polls of unfinished runs stay in the process.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .cache import CacheKey, OutputCache, environment_id
from .cached_packet import CachedPacket
from .config import ConfigurationError
from .shared_cache import DEFAULT_PREFIX, SharedCache

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


#: Configuration keys of the shared tier and their defaults. A URL of
#: ``None`` turns the tier off.
REDIS_DEFAULTS: Mapping[str, Any] = {
    "TRIGGER_OUTPUTS_REDIS_URL": None,
    "TRIGGER_OUTPUTS_REDIS_PREFIX": DEFAULT_PREFIX,
    "TRIGGER_OUTPUTS_REDIS_TIMEOUT": 0.5,
    "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT": 30.0,
    "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER": 30.0,
}

_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class RedisConfig:
    """Validated configuration of the shared tier. Durations are in seconds."""

    #: ``TRIGGER_OUTPUTS_REDIS_URL``. Left out of ``repr`` because it may
    #: contain a password.
    url: str = field(repr=False)
    #: ``TRIGGER_OUTPUTS_REDIS_PREFIX``
    prefix: str = DEFAULT_PREFIX
    #: ``TRIGGER_OUTPUTS_REDIS_TIMEOUT``: to connect and for each reply.
    timeout: float = 0.5
    #: ``TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT``
    lock_timeout: float = 30.0
    #: ``TRIGGER_OUTPUTS_REDIS_RETRY_AFTER``
    retry_after: float = 30.0


def redact_redis_url(url: str) -> str:
    """Return ``url`` with any user name and password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def load_redis_config(app_config: MutableMapping[str, Any]) -> RedisConfig | None:
    """Fill in the defaults of the shared tier's keys in ``app.config``,
    validate them and return them, or ``None`` when no URL is set.

    Numbers may be given as strings, as they are when read from the
    environment.

    :param app_config: the app's ``config``.
    :raises ConfigurationError: a key has an invalid value. The message
        never contains the URL's password.
    """
    for key, default in REDIS_DEFAULTS.items():
        app_config.setdefault(key, default)

    url = app_config["TRIGGER_OUTPUTS_REDIS_URL"]
    if url is None or url == "":
        return None

    key = "TRIGGER_OUTPUTS_REDIS_URL"
    if not isinstance(url, str) or urlsplit(url).scheme not in _REDIS_SCHEMES:
        shown = repr(redact_redis_url(url)) if isinstance(url, str) else repr(url)
        raise ConfigurationError(
            key,
            f"{key} must be a redis://, rediss:// or unix:// URL such as"
            f" 'redis://localhost:6379/0', or None to turn the shared cache off,"
            f" got {shown}.",
        )

    prefix = app_config["TRIGGER_OUTPUTS_REDIS_PREFIX"]
    if not isinstance(prefix, str):
        raise ConfigurationError(
            "TRIGGER_OUTPUTS_REDIS_PREFIX",
            f"TRIGGER_OUTPUTS_REDIS_PREFIX must be a string such as 'myapp:', got {prefix!r}.",
        )

    return RedisConfig(
        url=url,
        prefix=prefix,
        timeout=_read_seconds(app_config, "TRIGGER_OUTPUTS_REDIS_TIMEOUT"),
        lock_timeout=_read_seconds(app_config, "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT"),
        retry_after=_read_seconds(app_config, "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER"),
    )


def _read_seconds(app_config: Mapping[str, Any], key: str) -> float:
    value = app_config[key]
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)

    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(key, f"{key} must be a number of seconds above 0, got {value!r}.")
    return number


def create_output_cache(
    config: TriggerOutputsConfig, redis_config: RedisConfig | None
) -> OutputCache | None:
    """Create the cache of finished runs' packets for one app.

    :returns: a :class:`TieredOutputCache` when the shared tier is
        configured, an :class:`~flask_trigger_outputs.cache.OutputCache` when
        only the in-process cache is on, or ``None`` when both are off. With
        the shared tier on and ``TRIGGER_OUTPUTS_CACHE_MAX_BYTES`` at 0, the
        process keeps nothing but still merges concurrent loads.
    """
    options: dict[str, Any] = {
        "max_bytes": config.cache_max_bytes,
        "ttl": config.cache_ttl,
        "max_entry_share": config.cache_max_entry_share,
        "coalesce_window": config.poll_coalesce,
        "api_url": config.api_url,
        "environment": environment_id(config.secret_key, config.preview_branch),
    }
    if redis_config is None:
        return OutputCache(**options) if config.cache_max_bytes > 0 else None

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
