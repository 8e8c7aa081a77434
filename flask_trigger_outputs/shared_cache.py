"""A second cache tier on Redis, shared by every worker and host.

The in-process cache serves repeated reads inside one process. With several
gunicorn workers, possibly on several hosts, each process would still
download every finished output once. :class:`SharedCache` stores those bytes
in Redis so that one download serves all of them, and its single-flight lock
makes concurrent misses in different processes wait for one download instead
of starting their own.

Redis is an optimization here, never a dependency of a request: when it is
down or slow, every method behaves like a miss or does nothing, one WARNING is
logged, and the connection is tried again after a cooldown.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Prefix put before every key this package writes to Redis.
DEFAULT_PREFIX = "trigger-outputs:"

# The first byte of every stored value marks how the rest is encoded.
_RAW = b"\x00"
_ZLIB = b"\x01"

# Deletes the lock only while it still holds this holder's token, so a holder
# whose lock expired cannot delete the lock that another process took over.
_RELEASE_LOCK_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""

# Returned by _try_lock when another process holds the lock.
_BUSY = object()


def _same(value: Any) -> Any:
    return value


@dataclass
class SharedCacheStats:
    """Counters of what the shared tier did since it was created.

    Counters only grow. A value read from Redis counts as a hit, a missing or
    unreadable one as a miss, and any call skipped or failed because Redis
    was unavailable as an error.
    """

    hits: int = 0
    misses: int = 0
    stores: int = 0
    #: Calls of the ``load`` function passed to :meth:`SharedCache.get_or_load`.
    loads: int = 0
    #: Times a process waited for another process's load to finish.
    lock_waits: int = 0
    errors: int = 0


class SharedCache:
    """Byte values in Redis under a key prefix, with expiry, compression and
    a lock that lets one process load a missing value for all.

    Keys are strings that the caller builds from stable identity (API URL,
    environment, run id and kind of data), never from a presigned URL, which
    changes on every retrieve and carries a signature. Values are bytes.

    Every method catches Redis errors. The first failure logs one WARNING and
    turns the tier off for ``retry_after`` seconds. The first call after that
    tries Redis again, and if it succeeds, an INFO line is logged and the tier
    is on again.

    :param client: a redis-py client. Give it short socket timeouts and no
        retries (as :meth:`from_url` does), because a request waits for it.
    :param prefix: put before every key, so several apps or versions can share
        one Redis database.
    :param compress_min_size: values shorter than this many bytes are stored
        raw. Longer values are compressed with zlib, and stored compressed only
        when that saves at least a tenth of their size.
    :param compress_level: zlib level, 1 (fastest) to 9 (smallest).
    :param max_value_size: values longer than this many bytes are not stored,
        and a stored value that decompresses to more is treated as a miss.
    :param lock_timeout: seconds after which a lock expires if its holder
        neither stored a value nor released it (a crashed worker). Set it
        above the longest expected load.
    :param wait_initial: first pause, in seconds, of a process waiting for
        another process's load; each pause doubles up to ``wait_max``.
    :param wait_max: longest pause between two checks while waiting.
    :param retry_after: seconds to skip Redis after a failure.
    :param clock: monotonic clock in seconds, for tests.
    :param sleep: function that pauses for some seconds, for tests.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        compress_min_size: int = 1024,
        compress_level: int = 6,
        max_value_size: int = 16 * 1024 * 1024,
        lock_timeout: float = 30.0,
        wait_initial: float = 0.02,
        wait_max: float = 0.5,
        retry_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= compress_level <= 9:
            raise ValueError(f"compress_level must be between 1 and 9, got {compress_level!r}.")
        if lock_timeout <= 0:
            raise ValueError(
                f"lock_timeout must be a positive number of seconds, got {lock_timeout!r}."
            )
        if wait_initial <= 0 or wait_max < wait_initial:
            raise ValueError(
                f"wait_initial must be positive and at most wait_max, got {wait_initial!r}"
                f" and {wait_max!r}."
            )
        # Imported here, so that the configuration can be read without the
        # redis extra installed. A client passed in means redis is installed.
        import redis

        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "The Redis client for the shared cache must return bytes; create it"
                " without decode_responses=True."
            )
        self.client = client
        self._redis_error: type[Exception] = redis.RedisError
        self.prefix = prefix
        self.compress_min_size = compress_min_size
        self.compress_level = compress_level
        self.max_value_size = max_value_size
        self.lock_timeout = lock_timeout
        self.wait_initial = wait_initial
        self.wait_max = wait_max
        self.retry_after = retry_after
        self.stats = SharedCacheStats()
        self._clock = clock
        self._sleep = sleep
        self._release_lock = client.register_script(_RELEASE_LOCK_SCRIPT)
        self._state_lock = threading.Lock()
        # Monotonic time until which Redis is skipped; None while it works.
        self._off_until: float | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        **options: Any,
    ) -> SharedCache:
        """Create a shared cache on the Redis server at ``url``.

        No connection is made until the first call.

        :param url: a ``redis://``, ``rediss://`` or ``unix://`` URL, as
            redis-py's ``Redis.from_url`` reads it, with the password and
            database number if needed.
        :param socket_timeout: seconds to wait for a Redis reply.
        :param connect_timeout: seconds to wait for a connection.
        :param options: passed on to :class:`SharedCache`.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            # redis-py 8.2 retries a failed command 10 times with jittered
            # pauses of up to 1 s by default. A request should not wait for
            # that, so fail at once and go on without the tier.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, **options)

    @property
    def available(self) -> bool:
        """Whether Redis is in use, meaning that no failure happened within
        the last ``retry_after`` seconds."""
        return self._off_until is None

    def describe_server(self) -> str:
        """Return where the client connects, without the password."""
        kwargs = self.client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    # -- values ---------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` on a miss, on an
        unreadable value or while Redis is unavailable."""
        if not self._may_call():
            self._count("errors")
            return None
        try:
            stored = self.client.get(self._value_key(key))
        except self._redis_error as exc:
            self._failed("GET", exc)
            return None
        self._succeeded()

        value = None if not isinstance(stored, bytes) else self._decode(key, stored)
        self._count("misses" if value is None else "hits")
        return value

    def set(self, key: str, value: bytes, ttl: float) -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds.

        :returns: whether the value was stored. Values longer than
            ``max_value_size`` and a ``ttl`` that is not positive are skipped,
            and nothing is stored while Redis is unavailable.
        """
        if ttl <= 0 or len(value) > self.max_value_size:
            return False
        if not self._may_call():
            self._count("errors")
            return False
        encoded = self._encode(value)
        try:
            self.client.set(self._value_key(key), encoded, px=max(1, round(ttl * 1000)))
        except self._redis_error as exc:
            self._failed("SET", exc)
            return False
        self._succeeded()
        self._count("stores")
        return True

    def delete(self, key: str) -> None:
        """Remove the value stored under ``key``, if any."""
        if not self._may_call():
            self._count("errors")
            return
        try:
            self.client.delete(self._value_key(key))
        except self._redis_error as exc:
            self._failed("DEL", exc)
            return
        self._succeeded()

    def _value_key(self, key: str) -> str:
        return f"{self.prefix}value:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    def _encode(self, value: bytes) -> bytes:
        if len(value) >= self.compress_min_size:
            compressed = zlib.compress(value, self.compress_level)
            # Decompressing costs time on every read, so keep the raw value
            # unless compression saves at least a tenth of it.
            if len(compressed) * 10 <= len(value) * 9:
                return _ZLIB + compressed
        return _RAW + value

    def _decode(self, key: str, stored: bytes) -> bytes | None:
        header, body = stored[:1], stored[1:]
        if header == _RAW:
            return body
        if header == _ZLIB:
            decompressor = zlib.decompressobj()
            try:
                # max_length bounds the memory a corrupt or foreign value can take.
                value = decompressor.decompress(body, self.max_value_size + 1)
            except zlib.error as exc:
                logger.warning("Ignoring the shared cache value for %r: %s.", key, exc)
                return None
            if len(value) > self.max_value_size or not decompressor.eof:
                logger.warning(
                    "Ignoring the shared cache value for %r: it is truncated or"
                    " decompresses to more than %d bytes.",
                    key,
                    self.max_value_size,
                )
                return None
            return value
        logger.warning(
            "Ignoring the shared cache value for %r: unknown encoding byte %r.", key, header
        )
        return None

    # -- single flight ------------------------------------------------------------

    def get_or_load(
        self,
        key: str,
        load: Callable[[], T],
        ttl: float,
        *,
        encode: Callable[[T], bytes | None] | None = None,
        decode: Callable[[bytes], T | None] | None = None,
    ) -> T:
        """Return the value under ``key``, calling ``load`` and storing its
        result when it is missing, once across every process.

        On a miss the caller takes a lock in Redis (``SET NX PX`` with a random
        token) and loads the value. Others that miss meanwhile wait, checking
        for the value with pauses that double from ``wait_initial`` to
        ``wait_max``, until it appears. If the holder fails or crashes, its lock
        is released or expires after ``lock_timeout`` and the next waiter takes
        over. A waiter that has waited longer than ``lock_timeout`` loads the
        value itself. When Redis is unavailable the caller simply loads.

        :param key: the cache key, as for :meth:`get`.
        :param load: returns the value. Its exceptions propagate to the caller
            and nothing is stored.
        :param ttl: seconds to keep the loaded value.
        :param encode: turns a loaded value into the bytes to store, or into
            ``None`` to store nothing. By default the value is stored as is and
            must be bytes.
        :param decode: turns stored bytes back into a value, or into ``None``
            when they cannot be read, which counts as a miss. By default the
            bytes are returned as they are.
        """
        encode_value = encode if encode is not None else cast(Callable[[T], bytes], _same)
        decode_value = decode if decode is not None else cast(Callable[[bytes], T], _same)

        def read() -> T | None:
            stored = self.get(key)
            return None if stored is None else decode_value(stored)

        value = read()
        if value is not None:
            return value

        give_up_at = self._clock() + self.lock_timeout
        delay = self.wait_initial
        while True:
            token = self._try_lock(key)
            if token is not _BUSY:
                try:
                    if token is not None:
                        # Another process may have stored the value and
                        # released the lock between the miss and the lock.
                        value = read()
                        if value is not None:
                            return value
                    return self._load_and_store(key, load, ttl, encode_value)
                finally:
                    if isinstance(token, str):
                        self._unlock(key, token)

            if self._clock() >= give_up_at:
                logger.warning(
                    "Waited %.1f s for another process to load %r; loading it here.",
                    self.lock_timeout,
                    key,
                )
                return self._load_and_store(key, load, ttl, encode_value)

            self._count("lock_waits")
            self._sleep(delay)
            delay = min(delay * 2, self.wait_max)
            value = read()
            if value is not None:
                return value

    def _load_and_store(
        self, key: str, load: Callable[[], T], ttl: float, encode: Callable[[T], bytes | None]
    ) -> T:
        self._count("loads")
        value = load()
        data = encode(value)
        if data is not None:
            self.set(key, data, ttl)
        return value

    def _try_lock(self, key: str) -> object:
        """Take the lock for ``key``.

        :returns: the token when the lock was acquired, :data:`_BUSY` when
            another process owns it, or ``None`` when Redis is unavailable.
        """
        if not self._may_call():
            self._count("errors")
            return None
        token = secrets.token_hex(16)
        try:
            taken = self.client.set(
                self._lock_key(key), token, nx=True, px=max(1, round(self.lock_timeout * 1000))
            )
        except self._redis_error as exc:
            self._failed("SET NX", exc)
            return None
        self._succeeded()
        return token if taken else _BUSY

    def _unlock(self, key: str, token: str) -> None:
        if not self._may_call():
            return  # the lock expires by itself after lock_timeout
        try:
            self._release_lock(keys=[self._lock_key(key)], args=[token])
        except self._redis_error as exc:
            self._failed("lock release", exc)
            return
        self._succeeded()

    # -- availability -------------------------------------------------------------

    def _may_call(self) -> bool:
        """Decide whether a call may go to Redis now.

        While the tier is off this returns False until ``retry_after`` has
        passed. The first caller after that is let through to try Redis again,
        and the cooldown restarts for everyone else, so a Redis that is still
        down costs one failed call per ``retry_after`` seconds.
        """
        if self._off_until is None:
            return True
        with self._state_lock:
            if self._off_until is None:
                return True
            now = self._clock()
            if now < self._off_until:
                return False
            self._off_until = now + self.retry_after
            return True

    def _failed(self, operation: str, exc: Exception) -> None:
        self._count("errors")
        with self._state_lock:
            was_on = self._off_until is None
            self._off_until = self._clock() + self.retry_after
        if was_on:
            logger.warning(
                "The shared cache at Redis %s failed on %s (%s: %s); requests go on"
                " without it, and Redis is tried again in %.0f s.",
                self.describe_server(),
                operation,
                type(exc).__name__,
                exc,
                self.retry_after,
            )
        else:
            logger.debug(
                "The shared cache at Redis %s is still unavailable (%s: %s).",
                self.describe_server(),
                type(exc).__name__,
                exc,
            )

    def _succeeded(self) -> None:
        if self._off_until is None:
            return
        with self._state_lock:
            was_off = self._off_until is not None
            self._off_until = None
        if was_off:
            logger.info("The shared cache at Redis %s is available again.", self.describe_server())

    def _count(self, counter: str) -> None:
        with self._state_lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
