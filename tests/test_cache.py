"""Tests for the size-bounded TTL cache, its single-flight loads and its
short-window coalescing of polls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from flask_trigger_outputs.cache import (
    CachedPacket,
    CacheKey,
    CacheStats,
    OutputCache,
    deep_sizeof,
    environment_id,
)
from flask_trigger_outputs.errors import PacketDecodeError, StorageError

WORKERS = 16


class FakeClock:
    """A clock that moves only when a test calls :meth:`tick`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition did not become true in time")
        time.sleep(0.001)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def key(run_id: str = "run_abc", kind: str = "output") -> CacheKey:
    return CacheKey("http://127.0.0.1:1", environment_id("tr_dev_test"), run_id, kind)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_cache_put_get(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)

    assert cache.put(key(), {"a": 1}) is True
    assert cache.get(key()) == {"a": 1}
    assert cache.get(key("run_other")) is None


def test_cache_entry_expires_after_ttl(clock: FakeClock) -> None:
    cache = OutputCache(ttl=10.0, timer=clock)
    cache.put(key(), "value", size=10)

    clock.tick(9.9)
    assert cache.get(key()) == "value"

    clock.tick(0.2)
    assert cache.get(key()) is None
    snapshot = cache.snapshot()
    assert snapshot["entries"] == 0
    assert snapshot["bytes"] == 0
    assert snapshot["expirations"] == 1


def test_cache_bounded_by_bytes(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=1000, max_entry_share=0.5, timer=clock)

    cache.put(key("run_a"), "a", size=400)
    cache.put(key("run_b"), "b", size=400)
    cache.get(key("run_a"))  # run_a becomes the most recently used
    cache.put(key("run_c"), "c", size=400)

    assert cache.get(key("run_a")) == "a"
    assert cache.get(key("run_b")) is None
    assert cache.get(key("run_c")) == "c"
    snapshot = cache.snapshot()
    assert snapshot["evictions"] == 1
    assert snapshot["bytes"] == 800
    assert snapshot["entries"] == 2


def test_cache_skips_entry_above_share(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=1000, max_entry_share=0.25, timer=clock)

    assert cache.put(key(), "big", size=251) is False
    assert cache.put(key("run_small"), "small", size=250) is True

    assert cache.get(key()) is None
    assert cache.snapshot()["skipped"] == 1


def test_cache_disabled_stores_nothing(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=0, timer=clock)
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        return "value"

    assert cache.enabled is False
    assert cache.put(key(), "value", size=1) is False
    assert cache.get_or_load(key(), load) == "value"
    assert cache.get_or_load(key(), load) == "value"
    assert calls == 2


def test_cache_replaces_value(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=1000, timer=clock)

    cache.put(key(), "old", size=100)
    cache.put(key(), "new", size=200)

    assert cache.get(key()) == "new"
    assert cache.snapshot()["bytes"] == 200


def test_cache_discard_and_clear(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)
    cache.put(key("run_a"), "a")
    cache.put(key("run_b"), "b")

    cache.discard(key("run_a"))
    cache.discard(key("run_missing"))
    assert cache.get(key("run_a")) is None
    assert cache.get(key("run_b")) == "b"

    cache.clear()
    assert cache.snapshot()["entries"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_bytes": -1}, "max_bytes must be 0 or more bytes, got -1."),
        ({"ttl": 0}, "ttl must be more than 0 seconds, got 0."),
        ({"max_entry_share": 0}, "max_entry_share must be more than 0 and at most 1, got 0."),
        ({"max_entry_share": 1.5}, "max_entry_share must be more than 0 and at most 1, got 1.5."),
        ({"coalesce_window": -1.0}, "coalesce_window must be 0 or more seconds, got -1.0."),
    ],
)
def test_cache_rejects_invalid_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="must be") as info:
        OutputCache(**options)

    assert str(info.value) == message


def test_get_or_load_counts_hits_and_misses(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        return "value"

    assert cache.get_or_load(key(), load) == "value"
    assert cache.get_or_load(key(), load) == "value"
    assert cache.get_or_load(key(), load) == "value"

    assert calls == 1
    snapshot = cache.snapshot()
    assert snapshot["misses"] == 1
    assert snapshot["hits"] == 2
    assert snapshot["shared"] == 0


def test_get_or_load_failure_not_cached(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)
    calls = 0

    def load() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StorageError("The storage host answered 503.", run_id="run_abc")
        return "value"

    with pytest.raises(StorageError):
        cache.get_or_load(key(), load)

    assert cache.get(key()) is None
    assert cache.get_or_load(key(), load) == "value"
    assert calls == 2


def test_get_or_load_store_predicate(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)

    value = cache.get_or_load(key(), lambda: {"status": "EXECUTING"}, store=lambda v: False)

    assert value == {"status": "EXECUTING"}
    assert cache.get(key()) is None


def test_get_or_load_uses_size_function(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=1000, timer=clock)

    cache.get_or_load(key(), lambda: "value", size=lambda v: 123)

    assert cache.snapshot()["bytes"] == 123


def test_get_or_load_single_flight(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)
    calls = 0
    result = {"large": "output"}
    barrier = threading.Barrier(WORKERS)
    values: list[object] = []
    lock = threading.Lock()

    def load() -> dict[str, str]:
        nonlocal calls
        calls += 1
        wait_until(lambda: cache.waiters(key()) == WORKERS - 1)
        return result

    def work(_: int) -> None:
        barrier.wait()
        value = cache.get_or_load(key(), load)
        with lock:
            values.append(value)

    run_threads(WORKERS, work)

    assert calls == 1
    assert len(values) == WORKERS
    assert all(value is result for value in values)
    snapshot = cache.snapshot()
    assert snapshot["misses"] == 1
    assert snapshot["shared"] == WORKERS - 1
    assert snapshot["hits"] == 0
    assert cache.get(key()) is result


def test_get_or_load_single_flight_failure(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)
    calls = 0
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def load() -> str:
        nonlocal calls
        calls += 1
        wait_until(lambda: cache.waiters(key()) == WORKERS - 1)
        raise StorageError("The storage host answered 503.", run_id="run_abc")

    def work(_: int) -> None:
        barrier.wait()
        try:
            cache.get_or_load(key(), load)
        except StorageError as error:
            with lock:
                errors.append(error)

    run_threads(WORKERS, work)

    assert calls == 1
    assert len(errors) == WORKERS
    assert len({id(error) for error in errors}) == 1
    assert cache.get(key()) is None
    assert cache.snapshot()["entries"] == 0


def test_get_or_load_single_flight_with_cache_disabled(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=0, timer=clock)
    calls = 0
    barrier = threading.Barrier(WORKERS)

    def load() -> str:
        nonlocal calls
        calls += 1
        wait_until(lambda: cache.waiters(key()) == WORKERS - 1)
        return "value"

    def work(_: int) -> None:
        barrier.wait()
        assert cache.get_or_load(key(), load) == "value"

    run_threads(WORKERS, work)

    assert calls == 1


def test_get_or_load_lock_free_during_load(clock: FakeClock) -> None:
    cache = OutputCache(timer=clock)
    cache.put(key("run_other"), "other")
    seen: list[object] = []

    def load() -> str:
        # Another thread must be able to use the cache while a load runs.
        reader = threading.Thread(target=lambda: seen.append(cache.get(key("run_other"))))
        reader.start()
        reader.join(10)
        assert not reader.is_alive()
        cache.put(key("run_third"), "third")
        return "value"

    assert cache.get_or_load(key(), load) == "value"
    assert seen == ["other"]
    assert cache.get(key("run_third")) == "third"


def test_coalesce_within_window(clock: FakeClock) -> None:
    cache = OutputCache(coalesce_window=1.0, timer=clock)
    calls = 0

    def poll() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"status": "EXECUTING", "poll": calls}

    first = cache.coalesce(key(kind="run"), poll)
    clock.tick(0.5)
    second = cache.coalesce(key(kind="run"), poll)
    clock.tick(0.6)
    third = cache.coalesce(key(kind="run"), poll)

    assert first == {"status": "EXECUTING", "poll": 1}
    assert second is first
    assert third == {"status": "EXECUTING", "poll": 2}
    assert calls == 2
    assert cache.snapshot()["coalesced"] == 1
    # Poll results never enter the cache of finished data.
    assert cache.get(key(kind="run")) is None


def test_coalesce_concurrent_polls(clock: FakeClock) -> None:
    cache = OutputCache(coalesce_window=1.0, timer=clock)
    calls = 0
    barrier = threading.Barrier(WORKERS)
    started = threading.Event()
    release = threading.Event()

    def poll() -> dict[str, str]:
        nonlocal calls
        calls += 1
        started.set()
        assert release.wait(10)
        return {"status": "EXECUTING"}

    def work(_: int) -> None:
        barrier.wait()
        assert cache.coalesce(key(kind="run"), poll) == {"status": "EXECUTING"}

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    assert started.wait(10)
    # Callers that arrive while the poll runs wait for it; the rest find its
    # result afterwards, still inside the window.
    release.set()
    for thread in threads:
        thread.join(10)

    assert calls == 1
    assert cache.snapshot()["coalesced"] == WORKERS - 1


def test_coalesce_failure_not_kept(clock: FakeClock) -> None:
    cache = OutputCache(coalesce_window=1.0, timer=clock)
    calls = 0

    def poll() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return "EXECUTING"

    with pytest.raises(ConnectionError):
        cache.coalesce(key(kind="run"), poll)

    assert cache.coalesce(key(kind="run"), poll) == "EXECUTING"
    assert calls == 2


def test_coalesce_window_zero_disables(clock: FakeClock) -> None:
    cache = OutputCache(coalesce_window=0.0, timer=clock)
    calls = 0

    def poll() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert cache.coalesce(key(kind="run"), poll) == 1
    assert cache.coalesce(key(kind="run"), poll) == 2


def test_stats_thread_safe() -> None:
    stats = CacheStats()
    barrier = threading.Barrier(8)

    def work(_: int) -> None:
        barrier.wait()
        for _ in range(1000):
            stats.increment("hits")
            stats.record_download(10)
            stats.record_retry()

    run_threads(8, work)

    snapshot = stats.snapshot()
    assert snapshot["hits"] == 8000
    assert snapshot["downloads"] == 8000
    assert snapshot["bytes_downloaded"] == 80000
    assert snapshot["retries"] == 8000


def test_stats_snapshot_is_copy() -> None:
    stats = CacheStats()
    snapshot = stats.snapshot()
    snapshot["hits"] = 99

    assert stats.snapshot()["hits"] == 0
    assert list(snapshot) == list(CacheStats.FIELDS)


def test_stats_reset_and_unknown_counter() -> None:
    stats = CacheStats()
    stats.increment("misses", 3)
    stats.reset()

    assert stats.snapshot()["misses"] == 0
    with pytest.raises(KeyError, match="Unknown counter 'hit'"):
        stats.increment("hit")


def test_cache_shares_stats_object(clock: FakeClock) -> None:
    stats = CacheStats()
    cache = OutputCache(timer=clock, stats=stats)

    stats.record_download(2048)
    cache.get_or_load(key(), lambda: "value")

    snapshot = cache.snapshot()
    assert snapshot["downloads"] == 1
    assert snapshot["bytes_downloaded"] == 2048
    assert snapshot["misses"] == 1
    assert snapshot["max_bytes"] == 64 * 1024 * 1024


def test_environment_id_hides_key() -> None:
    secret = "tr_dev_0123456789abcdef"

    plain = environment_id(secret)
    branched = environment_id(secret, "feature-x")

    assert secret not in plain
    assert len(plain) == 16
    assert branched == f"{plain}:feature-x"
    assert environment_id("tr_prod_other") != plain


def test_cache_key_ignores_presigned_url() -> None:
    first = key()
    second = key()

    assert first == second
    assert hash(first) == hash(second)
    assert first != key(kind="payload")


def test_deep_sizeof_counts_nested_values() -> None:
    text = "x" * 10_000
    shared = [text]

    assert deep_sizeof({"a": text}) > 10_000
    # The same object reached twice counts once.
    assert deep_sizeof([shared, shared]) < deep_sizeof([[text], ["y" * 10_000]])


def test_cached_packet_from_json_value() -> None:
    value = {"pages": [{"url": "https://example.com/", "title": "Caf\u00e9"}]}

    packet = CachedPacket.from_json_value(value, run_id="run_abc")

    assert json.loads(packet.json_body) == value
    assert packet.data is packet.json_body
    assert packet.data_type == "application/json"
    assert packet.offloaded is False
    assert packet.size == len(packet.json_body)
    assert packet.nbytes < 2 * len(packet.json_body) + 300


def test_cached_packet_decode_returns_fresh_value() -> None:
    packet = CachedPacket.from_json_value({"items": [1, 2]})

    first = packet.decode(as_json=True)
    first["items"].append(3)

    assert packet.decode(as_json=True) == {"items": [1, 2]}


def test_cached_packet_rejects_nan() -> None:
    with pytest.raises(PacketDecodeError, match="run 'run_abc' contains NaN"):
        CachedPacket.from_json_value({"score": float("nan")}, run_id="run_abc")


def test_cached_packet_counted_by_nbytes(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=10_000, max_entry_share=1.0, timer=clock)
    packet = CachedPacket.from_json_value("x" * 3000)

    cache.put(key(), packet)

    assert cache.snapshot()["bytes"] == packet.nbytes


def test_cache_key_uses_namespace() -> None:
    cache = OutputCache(api_url="http://127.0.0.1:1/", environment="abc")

    assert cache.key("run_abc", "output") == CacheKey("http://127.0.0.1:1", "abc", "run_abc", "output")
