"""Tests of the Redis tier against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest
import redis
from redis_server import RedisServer, find_free_port

from flask_trigger_outputs.shared_cache import SharedCache

LOGGER = "flask_trigger_outputs.shared_cache"
PREFIX = "test:"


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


@pytest.fixture
def own_redis(redis_server_executable: str) -> Iterator[RedisServer]:
    """A server of the test's own, which the test may stop, pause and restart."""
    with RedisServer(redis_server_executable) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_cache(url: str, clock: FakeClock, **options: object) -> SharedCache:
    options.setdefault("socket_timeout", 0.2)
    options.setdefault("connect_timeout", 0.2)
    return SharedCache.from_url(
        url,
        prefix=PREFIX,
        clock=clock,
        sleep=clock.sleep,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def cache(
    redis_server: RedisServer, redis_client: redis.Redis, clock: FakeClock
) -> Iterator[SharedCache]:
    shared = make_cache(redis_server.url, clock)
    yield shared
    shared.close()


def command_calls(client: redis.Redis, command: str) -> int:
    """Return how often the server ran ``command`` since the last reset."""
    stats = client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_get_missing_key(cache: SharedCache) -> None:
    assert cache.get("absent") is None
    assert cache.stats.misses == 1
    assert cache.stats.hits == 0


def test_set_then_get_binary(cache: SharedCache) -> None:
    value = bytes(range(256)) * 3

    assert cache.set("run_1:output", value, ttl=60)

    assert cache.get("run_1:output") == value
    assert cache.stats.hits == 1
    assert cache.stats.stores == 1


def test_set_uses_prefix_and_ttl(cache: SharedCache, redis_client: redis.Redis) -> None:
    cache.set("run_1:output", b"{}", ttl=60)

    assert redis_client.keys("*") == [b"test:value:run_1:output"]
    ttl_ms = redis_client.pttl("test:value:run_1:output")
    assert 0 < ttl_ms <= 60_000


def test_set_compresses_large_value(cache: SharedCache, redis_client: redis.Redis) -> None:
    value = b'{"page": "https://example.com/", "words": 1234}\n' * 2000

    cache.set("big", value, ttl=60)

    stored = redis_client.get("test:value:big")
    assert stored is not None
    assert stored[:1] == b"\x01"
    assert len(stored) < len(value) // 10
    assert cache.get("big") == value


def test_set_keeps_small_value_raw(cache: SharedCache, redis_client: redis.Redis) -> None:
    value = b"a" * 1000  # compressible, but below compress_min_size

    cache.set("small", value, ttl=60)

    assert redis_client.get("test:value:small") == b"\x00" + value
    assert cache.get("small") == value


def test_set_keeps_incompressible_value_raw(cache: SharedCache, redis_client: redis.Redis) -> None:
    value = os.urandom(8192)

    cache.set("random", value, ttl=60)

    assert redis_client.get("test:value:random") == b"\x00" + value
    assert cache.get("random") == value


def test_set_skips_value_over_max_size(
    redis_server: RedisServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    cache = make_cache(redis_server.url, clock, max_value_size=100)

    assert not cache.set("large", b"x" * 101, ttl=60)
    assert cache.set("fits", b"x" * 100, ttl=60)

    assert redis_client.exists("test:value:large") == 0
    assert cache.stats.stores == 1
    cache.close()


def test_set_skips_ttl_not_positive(cache: SharedCache, redis_client: redis.Redis) -> None:
    assert not cache.set("zero", b"x", ttl=0)
    assert not cache.set("negative", b"x", ttl=-1)
    assert redis_client.keys("*") == []


def test_delete_removes_value(cache: SharedCache) -> None:
    cache.set("key", b"x", ttl=60)

    cache.delete("key")

    assert cache.get("key") is None


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (b"\x07abc", "unknown encoding byte"),
        (b"\x01not zlib data", "Error -3"),
        (b"\x01" + zlib.compress(b"x" * 5000)[:-8], "truncated"),
        (b"", "unknown encoding byte"),
    ],
)
def test_get_ignores_unreadable_value(
    cache: SharedCache,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    stored: bytes,
    reason: str,
) -> None:
    redis_client.set("test:value:bad", stored)

    assert cache.get("bad") is None

    assert cache.stats.misses == 1
    messages = [r.getMessage() for r in warnings_logged(caplog)]
    assert len(messages) == 1
    assert reason in messages[0]
    assert cache.available


def test_get_bounds_decompressed_size(
    redis_server: RedisServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    cache = make_cache(redis_server.url, clock, max_value_size=1000)
    redis_client.set("test:value:bomb", b"\x01" + zlib.compress(b"\x00" * 1_000_000))

    assert cache.get("bomb") is None
    cache.close()


def test_init_rejects_decoding_client() -> None:
    client = redis.Redis(host="127.0.0.1", port=find_free_port(), decode_responses=True)

    with pytest.raises(ValueError, match="decode_responses=True"):
        SharedCache(client)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compress_level": 0}, "compress_level must be between 1 and 9, got 0."),
        ({"lock_timeout": 0}, "lock_timeout must be a positive number of seconds, got 0."),
        ({"wait_initial": 1.0, "wait_max": 0.5}, "wait_initial must be positive"),
    ],
)
def test_init_rejects_invalid_option(options: dict[str, float], message: str) -> None:
    client = redis.Redis(host="127.0.0.1", port=find_free_port())

    with pytest.raises(ValueError, match=message):
        SharedCache(client, **options)  # type: ignore[arg-type]


# -- single flight ---------------------------------------------------------------


def test_get_or_load_loads_once(cache: SharedCache, redis_client: redis.Redis) -> None:
    loads: list[str] = []

    def load() -> bytes:
        loads.append("load")
        return b"output"

    assert cache.get_or_load("key", load, ttl=60) == b"output"
    assert cache.get_or_load("key", load, ttl=60) == b"output"

    assert loads == ["load"]
    assert cache.stats.loads == 1
    assert cache.stats.hits == 1
    assert redis_client.exists("test:lock:key") == 0


def test_get_or_load_waiter_reads_holder_value(
    cache: SharedCache, redis_server: RedisServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    redis_client.set("test:lock:key", "other-token", px=60_000)
    other = make_cache(redis_server.url, FakeClock())

    def store_on_second_sleep(count: int) -> None:
        if count == 2:
            other.set("key", b"from the holder", ttl=60)

    clock.on_sleep = store_on_second_sleep

    def load() -> bytes:
        raise AssertionError("the waiter must not load")

    assert cache.get_or_load("key", load, ttl=60) == b"from the holder"

    assert cache.stats.loads == 0
    assert cache.stats.lock_waits == 2
    assert clock.sleeps == [0.02, 0.04]
    other.close()


def test_get_or_load_backoff_is_bounded(
    redis_server: RedisServer, redis_client: redis.Redis, clock: FakeClock
) -> None:
    cache = make_cache(redis_server.url, clock, wait_initial=0.1, wait_max=0.3, lock_timeout=1.0)
    redis_client.set("test:lock:key", "other-token", px=60_000)

    value = cache.get_or_load("key", lambda: b"loaded here", ttl=60)

    assert value == b"loaded here"
    assert clock.sleeps == [0.1, 0.2, 0.3, 0.3, 0.3]
    assert cache.stats.loads == 1
    assert cache.get("key") == b"loaded here"
    # The lock still belongs to the other holder.
    assert redis_client.get("test:lock:key") == b"other-token"
    cache.close()


def test_get_or_load_gives_up_with_warning(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = make_cache(redis_server.url, clock, lock_timeout=1.0)
    redis_client.set("test:lock:key", "other-token", px=60_000)

    cache.get_or_load("key", lambda: b"x", ttl=60)

    messages = [r.getMessage() for r in warnings_logged(caplog)]
    assert messages == ["Waited 1.0 s for another process to load 'key'; loading it here."]
    cache.close()


def test_get_or_load_takes_over_expired_lock(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    # A crashed holder: its lock is never released and expires in Redis. The
    # clock does not move, so only the expiry in Redis can end the wait.
    cache = SharedCache.from_url(
        redis_server.url,
        prefix=PREFIX,
        lock_timeout=60.0,
        wait_initial=0.01,
        wait_max=0.02,
        clock=lambda: 0.0,
    )
    redis_client.set("test:lock:key", "crashed-holder", px=100)
    loads: list[str] = []

    def load() -> bytes:
        loads.append("load")
        return b"taken over"

    assert cache.get_or_load("key", load, ttl=60) == b"taken over"

    assert loads == ["load"]
    assert cache.stats.lock_waits >= 1
    assert redis_client.exists("test:lock:key") == 0
    cache.close()


def test_get_or_load_error_releases_lock(cache: SharedCache, redis_client: redis.Redis) -> None:
    def fail() -> bytes:
        raise RuntimeError("storage failed")

    with pytest.raises(RuntimeError, match="storage failed"):
        cache.get_or_load("key", fail, ttl=60)

    assert redis_client.exists("test:lock:key") == 0
    assert redis_client.exists("test:value:key") == 0
    assert cache.get_or_load("key", lambda: b"second try", ttl=60) == b"second try"


def test_get_or_load_keeps_lock_taken_over(cache: SharedCache, redis_client: redis.Redis) -> None:
    def slow_load() -> bytes:
        # The holder's lock expired during the load and another process took it.
        redis_client.set("test:lock:key", "new-holder", px=60_000)
        return b"value"

    cache.get_or_load("key", slow_load, ttl=60)

    assert redis_client.get("test:lock:key") == b"new-holder"


def test_get_or_load_counts_commands(cache: SharedCache, redis_client: redis.Redis) -> None:
    cache.get_or_load("key", lambda: b"value", ttl=60)
    # A miss: GET, SET NX for the lock, GET again under the lock, SET, and the
    # release script, which runs one more GET inside Redis.
    assert command_calls(redis_client, "get") == 3
    assert command_calls(redis_client, "set") == 2
    assert command_calls(redis_client, "evalsha") + command_calls(redis_client, "eval") == 1

    redis_client.config_resetstat()
    cache.get_or_load("key", lambda: b"value", ttl=60)
    # A hit: a single GET.
    assert command_calls(redis_client, "get") == 1
    assert command_calls(redis_client, "set") == 0


def test_get_or_load_single_flight_threads(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    # Each thread has its own SharedCache and connection, as separate
    # processes would; only Redis coordinates them.
    caches = [
        SharedCache.from_url(redis_server.url, prefix=PREFIX, wait_initial=0.005, wait_max=0.02)
        for _ in range(8)
    ]
    loads: list[int] = []
    results: list[bytes] = []
    all_missed = threading.Barrier(len(caches))
    others_waiting = threading.Event()

    def load(index: int) -> bytes:
        loads.append(index)
        # Hold the lock until every other thread has waited at least once.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = sum(1 for c in caches if c.stats.lock_waits > 0)
            if waiting == len(caches) - 1:
                others_waiting.set()
                break
            time.sleep(0.005)
        return b"shared output"

    def worker(index: int) -> None:
        all_missed.wait(timeout=10)
        results.append(caches[index].get_or_load("key", lambda: load(index), ttl=60))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(caches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert others_waiting.is_set()
    assert len(loads) == 1
    assert results == [b"shared output"] * len(caches)
    for shared in caches:
        shared.close()


def _process_worker(url: str, start: multiprocessing.synchronize.Event) -> None:
    cache = SharedCache.from_url(url, prefix=PREFIX, wait_initial=0.005, wait_max=0.05)
    counter = redis.Redis.from_url(url)

    def load() -> bytes:
        counter.incr("loads-counted-by-test")
        time.sleep(0.2)  # a download long enough for the others to miss
        return b"output of the one download"

    start.wait(timeout=30)
    value = cache.get_or_load("key", load, ttl=60)
    counter.rpush("results-counted-by-test", value)


def test_get_or_load_single_flight_processes(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [
        context.Process(target=_process_worker, args=(redis_server.url, start)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=60)

    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    assert redis_client.get("loads-counted-by-test") == b"1"
    assert (
        redis_client.lrange("results-counted-by-test", 0, -1) == [b"output of the one download"] * 4
    )


# -- Redis down or slow -----------------------------------------------------------


def test_redis_stopped_and_restarted(
    own_redis: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    cache = make_cache(own_redis.url, clock, retry_after=30.0)
    cache.set("key", b"before", ttl=600)
    assert cache.get("key") == b"before"

    own_redis.stop()

    assert cache.get("key") is None
    assert not cache.available
    assert not cache.set("key", b"during", ttl=600)
    assert cache.get_or_load("other", lambda: b"loaded without Redis", ttl=600) == (
        b"loaded without Redis"
    )
    cache.delete("key")
    warnings = warnings_logged(caplog)
    assert len(warnings) == 1
    assert "failed on GET (ConnectionError" in warnings[0].getMessage()
    assert "tried again in 30 s" in warnings[0].getMessage()

    # Back on the same port, empty. Within the cooldown the tier stays off and
    # sends Redis nothing.
    own_redis.start()
    client = own_redis.client()
    clock.now += 29.0
    assert cache.get("key") is None
    assert not cache.set("key", b"still off", ttl=600)
    assert command_calls(client, "get") == 0
    assert command_calls(client, "set") == 0

    clock.now += 1.0
    assert cache.set("key", b"after", ttl=600)
    assert cache.available
    assert cache.get("key") == b"after"
    assert len(warnings_logged(caplog)) == 1
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"The shared cache at Redis 127.0.0.1:{own_redis.port}/0 is available again."]
    client.close()
    cache.close()


def test_redis_down_one_probe_per_cooldown(
    own_redis: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    cache = make_cache(own_redis.url, clock, retry_after=10.0)
    own_redis.stop()

    for _ in range(5):
        assert cache.get("key") is None
    assert cache.stats.errors == 5
    clock.now += 10.0
    for _ in range(5):
        assert cache.get("key") is None

    # One failed call opened the outage, one probe after the cooldown; the
    # other calls were skipped, and only the first failure was a WARNING.
    assert len(warnings_logged(caplog)) == 1
    debug_lines = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug_lines) == 1
    assert cache.stats.errors == 10
    cache.close()


def test_redis_second_outage_warns_again(
    own_redis: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(own_redis.url, clock, retry_after=5.0)
    own_redis.stop()
    cache.get("key")
    own_redis.start()
    clock.now += 5.0
    assert cache.set("key", b"x", ttl=60)

    own_redis.stop()
    cache.get("key")

    assert len(warnings_logged(caplog)) == 2
    cache.close()


def test_redis_paused_times_out(
    own_redis: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(own_redis.url, clock, socket_timeout=0.1, retry_after=5.0)
    cache.set("key", b"value", ttl=600)

    own_redis.pause()
    try:
        value = cache.get_or_load("key", lambda: b"loaded while Redis hangs", ttl=600)
    finally:
        own_redis.resume()

    assert value == b"loaded while Redis hangs"
    warnings = warnings_logged(caplog)
    assert len(warnings) == 1
    assert "TimeoutError" in warnings[0].getMessage()

    clock.now += 5.0
    assert cache.get("key") == b"value"
    assert cache.available
    cache.close()


def test_redis_stopped_during_load(own_redis: RedisServer, clock: FakeClock) -> None:
    cache = make_cache(own_redis.url, clock)

    def load_then_lose_redis() -> bytes:
        own_redis.stop()
        return b"downloaded"

    assert cache.get_or_load("key", load_then_lose_redis, ttl=600) == b"downloaded"
    assert not cache.available
    cache.close()


def test_redis_never_started(
    redis_server_executable: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    port = find_free_port()
    url = f"redis://:hunter2-password@127.0.0.1:{port}/3"
    cache = make_cache(url, clock)

    assert cache.get_or_load("key", lambda: b"value", ttl=60) == b"value"

    warnings = warnings_logged(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "hunter2-password" not in message
    assert f"Redis 127.0.0.1:{port}/3 failed on GET" in message
    assert cache.describe_server() == f"127.0.0.1:{port}/3"
    cache.close()


def test_get_or_load_encode_none_skips_store(cache: SharedCache, redis_client: redis.Redis) -> None:
    value = cache.get_or_load("key", lambda: "not cacheable", ttl=60, encode=lambda v: None)

    assert value == "not cacheable"
    assert redis_client.keys("*") == []


def test_get_or_load_decode_converts_value(cache: SharedCache) -> None:
    def encode(value: int) -> bytes:
        return str(value).encode()

    def decode(raw: bytes) -> int | None:
        return int(raw) if raw.isdigit() else None

    first = cache.get_or_load("number", lambda: 42, ttl=60, encode=encode, decode=decode)
    second = cache.get_or_load("number", lambda: 0, ttl=60, encode=encode, decode=decode)

    assert first == 42
    assert second == 42
    assert cache.stats.loads == 1


def test_get_or_load_undecodable_value_reloads(
    cache: SharedCache, redis_client: redis.Redis
) -> None:
    redis_client.set("test:value:number", b"\x00not a number")

    def decode(raw: bytes) -> int | None:
        return int(raw) if raw.isdigit() else None

    value = cache.get_or_load(
        "number", lambda: 7, ttl=60, encode=lambda v: str(v).encode(), decode=decode
    )

    assert value == 7
    assert redis_client.get("test:value:number") == b"\x007"
