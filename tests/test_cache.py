"""Tests for the size-bounded TTL cache, its single-flight loads and its
short-window coalescing of polls."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from clocks import FakeClock
from flask import Flask
from threads import run_threads, wait_until
from werkzeug.serving import make_server

from flask_trigger_outputs.cache import (
    CachedPacket,
    CacheKey,
    CacheStats,
    OutputCache,
    deep_sizeof,
    environment_id,
)
from flask_trigger_outputs.client import TriggerClient
from flask_trigger_outputs.decoding import decode_packet
from flask_trigger_outputs.emulator import Emulator, EmulatorServer, StoredPacket
from flask_trigger_outputs.errors import PacketDecodeError, StorageError
from flask_trigger_outputs.extension import get_state
from flask_trigger_outputs.packets import PacketDownloader
from flask_trigger_outputs.reader import RunReader
from flask_trigger_outputs.stream import json_response_with_output

WORKERS = 16


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

    clock.advance(9.9)
    assert cache.get(key()) == "value"

    clock.advance(0.2)
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


def test_cache_logs_eviction_outside_lock(clock: FakeClock) -> None:
    cache = OutputCache(max_bytes=1000, max_entry_share=0.5, timer=clock)
    records: list[tuple[str, bool]] = []

    class LockProbe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append((record.getMessage(), cache._lock.locked()))

    cache_logger = logging.getLogger("flask_trigger_outputs.cache")
    probe = LockProbe(logging.DEBUG)
    cache_logger.addHandler(probe)
    level = cache_logger.level
    cache_logger.setLevel(logging.DEBUG)
    try:
        cache.put(key("run_a"), "a", size=400)
        cache.put(key("run_b"), "b", size=400)
        cache.put(key("run_c"), "c", size=400)
    finally:
        cache_logger.removeHandler(probe)
        cache_logger.setLevel(level)

    evictions = [(message, locked) for message, locked in records if "Evicted" in message]
    assert len(evictions) == 1
    message, locked = evictions[0]
    assert "run_a" in message
    assert "400 bytes" in message
    assert locked is False
    assert cache.snapshot()["evictions"] == 1


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
    # One failure: each waiter raises a copy caused by the leader's error.
    assert len({id(error) for error in errors}) == WORKERS
    assert len({id(error.__cause__ or error) for error in errors}) == 1
    assert len({error.message for error in errors if isinstance(error, StorageError)}) == 1
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
    clock.advance(0.5)
    second = cache.coalesce(key(kind="run"), poll)
    clock.advance(0.6)
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

    assert cache.key("run_abc", "output") == CacheKey(
        "http://127.0.0.1:1", "abc", "run_abc", "output"
    )


# -- the cache in the reader and the routes, against the emulator ---------

#: A superjson packet in the format the official serializer writes: a Date and an
#: undefined field, which the JSON form turns into a string and drops.
SUPERJSON_PACKET = (
    b'{"json":{"site":"https://example.com","fetchedAt":"2024-05-01T12:00:00.000Z",'
    b'"pages":[{"url":"https://example.com/","title":"Home"}]},'
    b'"meta":{"values":{"fetchedAt":["Date"],"pages.0.error":["undefined"]}}}'
)
SUPERJSON_AS_JSON = {
    "site": "https://example.com",
    "fetchedAt": "2024-05-01T12:00:00.000Z",
    "pages": [{"url": "https://example.com/", "title": "Home"}],
}
STAMPEDE_CLIENTS = 32


def make_app(server: EmulatorServer, **config: Any) -> Flask:
    app = Flask("cache_test")
    app.config.update(
        TESTING=True,
        TRIGGER_API_URL=server.url,
        TRIGGER_SECRET_KEY=server.secret_key,
        **config,
    )
    from flask_trigger_outputs.extension import TriggerOutputs

    TriggerOutputs(app)
    return app


def create_crawl_run(server: EmulatorServer, data: bytes = SUPERJSON_PACKET) -> str:
    packet = StoredPacket(data, "application/super+json")
    return server.emulator.create_run("site-crawl", output=packet, offload_output=True)


class GatedDownloader(PacketDownloader):
    """A downloader that calls ``gate`` before its first download, so a test
    can hold that download until every other reader waits for it."""

    def __init__(self, gate: Callable[[], None], **options: Any) -> None:
        super().__init__(**options)
        self._gate: Callable[[], None] | None = gate

    def download(self, url: str, *, run_id: str | None = None) -> Any:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate()
        return super().download(url, run_id=run_id)


def hold_downloads_until_waiters(app: Flask, run_id: str, count: int) -> None:
    """Make the app's reader hold the next download of ``run_id``'s output
    until ``count`` other readers wait for it."""
    state = get_state(app)
    key = state.cache.key(run_id, "output")
    state.reader.downloader = GatedDownloader(
        lambda: wait_until(lambda: state.cache.waiters(key) == count),
        max_size=state.downloader.max_size,
        retry_policy=state.downloader.retry_policy,
    )


def downloads(server: EmulatorServer) -> int:
    return sum(server.emulator.stats.downloads.values())


def retrievals(server: EmulatorServer) -> int:
    return server.emulator.stats.api_calls["retrieve"]


@pytest.fixture
def served_app(trigger_emulator: EmulatorServer) -> Iterator[tuple[Flask, str]]:
    """Yield an app and the base URL it is served at on 127.0.0.1."""
    app = make_app(trigger_emulator)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_reader_finished_run_sends_no_request(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator)
    reader = get_state(app).reader
    run_id = create_crawl_run(trigger_emulator)

    first = reader.get_output(run_id, as_json=True)
    second = reader.get_output(run_id, as_json=True)
    run = reader.get_run(run_id)

    assert first == SUPERJSON_AS_JSON
    assert second == SUPERJSON_AS_JSON
    assert run.is_success
    assert retrievals(trigger_emulator) == 1
    assert downloads(trigger_emulator) == 1


def test_reader_typed_output_from_cache(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator)
    reader = get_state(app).reader
    run_id = create_crawl_run(trigger_emulator)

    reader.get_output(run_id, as_json=True)
    typed = reader.get_output(run_id)
    typed["pages"].append("changed by the caller")

    assert typed["fetchedAt"].isoformat() == "2024-05-01T12:00:00+00:00"
    # Each call decodes its own value, so a caller's change stays its own.
    assert len(reader.get_output(run_id)["pages"]) == 1
    assert downloads(trigger_emulator) == 1


def test_route_cache_hit_sends_no_request(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = create_crawl_run(trigger_emulator)

    miss = client.get(f"/api/crawl?runId={run_id}")
    requests_after_miss = len(trigger_emulator.emulator.stats.requests)
    hit = client.get(f"/api/crawl?runId={run_id}")

    assert miss.status_code == 200
    assert hit.status_code == 200
    assert hit.get_data() == miss.get_data()
    assert hit.get_json()["output"] == SUPERJSON_AS_JSON
    assert hit.get_json()["outputSize"] == len(SUPERJSON_PACKET)
    assert hit.get_json()["outputOffloaded"] is True
    assert hit.headers["Content-Length"] == str(len(hit.get_data()))
    assert len(trigger_emulator.emulator.stats.requests) == requests_after_miss


def test_route_stampede_one_download(
    trigger_emulator: EmulatorServer, served_app: tuple[Flask, str]
) -> None:
    app, base_url = served_app
    output = {"pages": [{"url": f"https://example.com/{i}", "text": "x" * 500} for i in range(400)]}
    run_id = trigger_emulator.emulator.create_run("site-crawl", output=output, offload_output=True)
    hold_downloads_until_waiters(app, run_id, STAMPEDE_CLIENTS - 1)
    barrier = threading.Barrier(STAMPEDE_CLIENTS)
    bodies: list[bytes] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def fetch(_: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            response = session.get(f"{base_url}/api/crawl?runId={run_id}", timeout=60)
        with lock:
            statuses.append(response.status_code)
            bodies.append(response.content)

    run_threads(STAMPEDE_CLIENTS, fetch)

    assert statuses == [200] * STAMPEDE_CLIENTS
    assert len(set(bodies)) == 1
    assert json.loads(bodies[0])["output"] == output
    assert retrievals(trigger_emulator) == 1
    assert downloads(trigger_emulator) == 1
    snapshot = get_state(app).cache.snapshot()
    assert snapshot["downloads"] == 1
    assert snapshot["shared"] >= STAMPEDE_CLIENTS - 1


def test_reader_stampede_shares_failure(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator, TRIGGER_OUTPUTS_MAX_TRIES=1)
    reader = get_state(app).reader
    run_id = create_crawl_run(trigger_emulator)
    reader.get_run(run_id)
    hold_downloads_until_waiters(app, run_id, 7)
    trigger_emulator.emulator.faults.fail_storage(times=1, status=500)
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def read(_: int) -> None:
        barrier.wait()
        try:
            reader.get_output(run_id)
        except StorageError as error:
            with lock:
                errors.append(error)

    run_threads(8, read)

    assert downloads(trigger_emulator) == 1
    assert len(errors) == 8
    # One failure: each waiter raises a copy caused by the leader's error.
    assert len({id(error) for error in errors}) == 8
    assert len({id(error.__cause__ or error) for error in errors}) == 1
    assert len({error.message for error in errors if isinstance(error, StorageError)}) == 1
    assert reader.get_output(run_id, as_json=True) == SUPERJSON_AS_JSON
    assert downloads(trigger_emulator) == 2


def test_reader_coalesces_unfinished_polls(
    trigger_emulator: EmulatorServer, clock: FakeClock
) -> None:
    client = TriggerClient(trigger_emulator.secret_key, api_url=trigger_emulator.url)
    cache = OutputCache(timer=clock, coalesce_window=1.0, api_url=trigger_emulator.url)
    reader = RunReader(client, PacketDownloader(), cache=cache)
    run_id = trigger_emulator.emulator.create_run(
        "site-crawl", status="EXECUTING", output={"done": True}, offload_output=False
    )

    reader.get_run(run_id)
    clock.advance(0.5)
    second = reader.get_run(run_id)
    assert second.status == "EXECUTING"
    assert retrievals(trigger_emulator) == 1

    clock.advance(0.6)
    trigger_emulator.emulator.update_run(run_id, status="COMPLETED")
    finished = reader.get_run(run_id)
    assert finished.status == "COMPLETED"
    assert retrievals(trigger_emulator) == 2

    # A finished run is kept for the cache's TTL, not the window.
    clock.advance(5.0)
    assert reader.get_run(run_id).status == "COMPLETED"
    assert retrievals(trigger_emulator) == 2
    assert cache.snapshot()["coalesced"] == 1


def test_reader_cache_disabled_downloads_each_time(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator, TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0)
    reader = get_state(app).reader
    run_id = create_crawl_run(trigger_emulator)

    reader.get_output(run_id)
    reader.get_output(run_id)

    assert downloads(trigger_emulator) == 2
    assert get_state(app).cache.snapshot()["downloads"] == 2


def test_route_raw_format_relays_packet(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator, TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0)
    client = app.test_client()
    run_id = create_crawl_run(trigger_emulator)

    response = client.get(f"/api/crawl?runId={run_id}&format=raw")

    assert response.status_code == 200
    assert response.get_data() == SUPERJSON_PACKET
    assert response.headers["Content-Type"] == "application/super+json"
    assert response.headers["Content-Length"] == str(len(SUPERJSON_PACKET))
    assert response.headers["Cache-Control"] == "no-store"
    assert downloads(trigger_emulator) == 1
    assert get_state(app).cache.snapshot()["bytes_downloaded"] == len(SUPERJSON_PACKET)


def test_route_raw_format_from_cache(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = create_crawl_run(trigger_emulator)
    client.get(f"/api/crawl?runId={run_id}")
    requests_before = len(trigger_emulator.emulator.stats.requests)

    response = client.get(f"/api/crawl?runId={run_id}&format=raw")

    assert response.get_data() == SUPERJSON_PACKET
    assert response.headers["Content-Type"] == "application/super+json"
    assert len(trigger_emulator.emulator.stats.requests) == requests_before


def test_route_raw_format_refreshes_expired_url(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator, TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0).test_client()
    run_id = create_crawl_run(trigger_emulator)
    client.get(f"/api/crawl/status?runId={run_id}")
    trigger_emulator.emulator.faults.expire_urls_now()

    response = client.get(f"/api/crawl?runId={run_id}&format=raw")

    assert response.status_code == 200
    assert response.get_data() == SUPERJSON_PACKET


def test_route_refreshed_url_kept_in_cache(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = create_crawl_run(trigger_emulator)
    client.get(f"/api/crawl/status?runId={run_id}")  # caches the finished run
    trigger_emulator.emulator.faults.expire_urls_now()

    raw = client.get(f"/api/crawl?runId={run_id}&format=raw")
    polled = client.get(f"/api/crawl?runId={run_id}")

    assert raw.get_data() == SUPERJSON_PACKET
    assert polled.get_json()["output"] == SUPERJSON_AS_JSON
    # The fresh URL that the raw relay retrieved replaced the cached run's,
    # so the poll downloads without another 403.
    statuses = [r.status for r in trigger_emulator.emulator.stats.storage_requests()]
    assert statuses == [403, 200, 200]
    assert retrievals(trigger_emulator) == 2


def test_route_raw_format_inline_output(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = trigger_emulator.emulator.create_run(
        "site-crawl", output={"small": True}, offload_output=False
    )

    response = client.get(f"/api/crawl?runId={run_id}&format=raw")

    assert response.status_code == 200
    assert response.get_json() == {"small": True}
    assert response.headers["Content-Type"] == "application/json"


def test_route_raw_format_inline_same_bytes_on_hit(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    output = {"zeta": "caf\u00e9", "alpha": [1, 2.5, None]}
    run_id = trigger_emulator.emulator.create_run("site-crawl", output=output, offload_output=False)

    miss = client.get(f"/api/crawl?runId={run_id}&format=raw")
    client.get(f"/api/crawl?runId={run_id}")  # caches the output packet
    hit = client.get(f"/api/crawl?runId={run_id}&format=raw")

    assert miss.get_data() == hit.get_data()
    assert json.loads(hit.get_data()) == output


def test_route_inline_output_size_same_without_cache(trigger_emulator: EmulatorServer) -> None:
    # A lone surrogate has no UTF-8 form, so its size depends on how the
    # text is serialized.
    output = {"text": "caf\u00e9 \ud800"}
    run_id = trigger_emulator.emulator.create_run("site-crawl", output=output, offload_output=False)
    app = make_app(trigger_emulator)
    state = get_state(app)
    uncached = RunReader(state.client, state.downloader, cache=None)

    with_cache = app.test_client().get(f"/api/crawl?runId={run_id}").get_json()
    without_cache = uncached.get_result(run_id)

    assert with_cache["output"] == output
    assert with_cache["outputSize"] == without_cache.output_size


def test_route_raw_format_unfinished_run(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = trigger_emulator.emulator.create_run("site-crawl", status="EXECUTING")

    response = client.get(f"/api/crawl?runId={run_id}&format=raw")

    assert response.status_code == 409
    assert response.get_json()["error"] == "run_not_finished"


def test_route_redirect_format_off_by_default(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = create_crawl_run(trigger_emulator)

    response = client.get(f"/api/crawl?runId={run_id}&format=redirect")

    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid_request",
        "field": "format",
        "message": "Invalid format 'redirect': expected one of json, raw, once.",
    }
    assert "Location" not in response.headers
    assert downloads(trigger_emulator) == 0


def test_route_redirect_format(trigger_emulator: EmulatorServer) -> None:
    client = make_app(
        trigger_emulator, TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0, TRIGGER_OUTPUTS_ALLOW_REDIRECT=True
    ).test_client()
    run_id = create_crawl_run(trigger_emulator)

    response = client.get(f"/api/crawl?runId={run_id}&format=redirect")

    assert response.status_code == 307
    location = response.headers["Location"]
    assert location.startswith(f"{trigger_emulator.url}/storage/")
    assert downloads(trigger_emulator) == 0
    stored = requests.get(location, timeout=10)
    assert stored.content == SUPERJSON_PACKET


def test_route_redirect_after_url_expiry() -> None:
    now = [1_700_000_000.0]
    emulator = Emulator(url_expiry=300.0, clock=lambda: now[0])

    with EmulatorServer(emulator) as server:
        client = make_app(server, TRIGGER_OUTPUTS_ALLOW_REDIRECT=True).test_client()
        run_id = create_crawl_run(server)
        client.get(f"/api/crawl/status?runId={run_id}")  # caches the finished run
        now[0] += 301.0

        response = client.get(f"/api/crawl?runId={run_id}&format=redirect")

        assert response.status_code == 307
        stored = requests.get(response.headers["Location"], timeout=10)
        assert stored.status_code == 200
        assert stored.content == SUPERJSON_PACKET
        assert retrievals(server) == 2


def test_route_invalid_format(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = create_crawl_run(trigger_emulator)

    response = client.get(f"/api/crawl?runId={run_id}&format=xml")

    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert response.get_json()["field"] == "format"
    assert retrievals(trigger_emulator) == 0


def test_stats_count_retries(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator)
    state = get_state(app)
    state.downloader.retry_policy = dataclasses.replace(
        state.downloader.retry_policy, sleep=lambda seconds: None
    )
    run_id = create_crawl_run(trigger_emulator)
    trigger_emulator.emulator.faults.fail_storage(times=2, status=503)

    state.reader.get_output(run_id)

    snapshot = state.cache.snapshot()
    assert snapshot["retries"] == 2
    assert snapshot["downloads"] == 1
    assert snapshot["misses"] == 2  # the run and its output
    assert downloads(trigger_emulator) == 3


def test_cli_stats_command(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator)
    get_state(app).cache.stats.record_download(1234)

    result = app.test_cli_runner().invoke(args=["trigger-outputs", "stats", "--json"])

    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["downloads"] == 1
    assert counts["bytes_downloaded"] == 1234
    assert counts["max_bytes"] == 64 * 1024 * 1024


# -- cached packets from real serializer output and the response helpers --


def vector_cases(vectors_dir: Path) -> list[dict[str, Any]]:
    cases = []
    for path in sorted((vectors_dir / "cases").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        # Large cases keep their packet in a separate file.
        if "packet" in case and case["packet"].get("data") is not None:
            cases.append(case)
    return cases


def test_cached_packet_matches_decoder_on_vectors(vectors_dir: Path) -> None:
    cases = vector_cases(vectors_dir)
    assert len(cases) > 50

    for case in cases:
        raw = case["packet"]["data"]
        # One case stores an object, which a presigned GET returns as JSON text.
        text = raw if isinstance(raw, str) else json.dumps(raw)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            continue  # a lone surrogate has no UTF-8 encoding, so no stored body
        data_type = case["packet"]["dataType"]
        try:
            expected = decode_packet(data, data_type, as_json=True, run_id="run_abc")
        except PacketDecodeError:
            with pytest.raises(PacketDecodeError):
                CachedPacket.from_data(data, data_type, offloaded=True, run_id="run_abc")
            continue

        packet = CachedPacket.from_data(data, data_type, offloaded=True, run_id="run_abc")

        assert json.loads(packet.json_body) == expected, case["name"]
        assert packet.decode(as_json=True) == expected, case["name"]
        assert packet.data == data
        assert packet.data_type == data_type
        if "expected_as_json" in case:
            assert json.loads(packet.json_body) == case["expected_as_json"], case["name"]


def test_cached_packet_content_type_parameters() -> None:
    packet = CachedPacket.from_data(
        b'{"a": [1, 2]}', "Application/JSON; charset=utf-8", offloaded=True
    )

    assert packet.data_type == "application/json"
    assert json.loads(packet.json_body) == {"a": [1, 2]}


def test_cached_packet_text_plain() -> None:
    packet = CachedPacket.from_data("caf\u00e9 \u2603".encode(), "text/plain", offloaded=True)

    assert json.loads(packet.json_body) == "caf\u00e9 \u2603"
    assert packet.decode() == "caf\u00e9 \u2603"


def test_cached_packet_rejects_storage_error_body() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        b"<Message>The specified key does not exist.</Message></Error>"
    )

    with pytest.raises(StorageError):
        CachedPacket.from_data(body, "application/xml", offloaded=True, run_id="run_abc")


def test_json_response_with_output_inserts_bytes() -> None:
    app = Flask("response_test")

    with app.app_context():
        response = json_response_with_output({"runId": "run_abc", "isFinished": True}, b"[1,2]")
        empty = json_response_with_output({}, b'{"a":null}')

    assert response.mimetype == "application/json"
    assert response.get_json() == {"runId": "run_abc", "isFinished": True, "output": [1, 2]}
    assert response.headers["Content-Length"] == str(len(response.get_data()))
    assert empty.get_json() == {"output": {"a": None}}


def test_json_response_with_output_rejects_key() -> None:
    app = Flask("response_test")

    with app.app_context(), pytest.raises(ValueError, match="already contains 'output'"):
        json_response_with_output({"output": 1}, b"2")


def test_route_format_given_twice(trigger_emulator: EmulatorServer) -> None:
    client = make_app(trigger_emulator).test_client()
    run_id = create_crawl_run(trigger_emulator)

    response = client.get(f"/api/crawl?runId={run_id}&format=raw&format=raw")

    assert response.status_code == 400
    assert response.get_json()["field"] == "format"


def test_reader_payload_cached_while_running(trigger_emulator: EmulatorServer) -> None:
    app = make_app(trigger_emulator, TRIGGER_OUTPUTS_POLL_COALESCE=0.0)
    reader = get_state(app).reader
    payload = {"url": "https://example.com", "notes": "x" * 600_000}
    run_id = trigger_emulator.emulator.create_run(
        "site-crawl", status="EXECUTING", payload=payload, offload_payload=True
    )

    first = reader.get_payload(run_id, as_json=True)
    second = reader.get_payload(run_id, as_json=True)

    assert first == payload
    assert second == payload
    assert retrievals(trigger_emulator) == 2
    assert downloads(trigger_emulator) == 1


def test_cached_packet_lone_surrogate() -> None:
    packet = CachedPacket.from_json_value({"text": "a\ud800b", "name": "caf\u00e9"})

    assert packet.json_body == b'{"text":"a\\ud800b","name":"caf\\u00e9"}'
    assert json.loads(packet.json_body) == {"text": "a\ud800b", "name": "caf\u00e9"}
