"""Tests of the in-process cache with the Redis tier behind it."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
from flask import Flask
from redis_server import RedisServer, find_free_port

from flask_trigger_outputs.cache import CachedPacket, CacheKey, OutputCache, environment_id
from flask_trigger_outputs.config import TriggerOutputsConfig, load_config
from flask_trigger_outputs.emulator import Emulator, EmulatorServer
from flask_trigger_outputs.extension import TriggerOutputs, get_state
from flask_trigger_outputs.shared_cache import SharedCache
from flask_trigger_outputs.shared_tier import (
    TieredOutputCache,
    create_output_cache,
    pack_packet,
    shared_key,
    unpack_packet,
)

PREFIX = "tier-test:"
OUTPUT_KEY = CacheKey("http://127.0.0.1:1234", "0123456789abcdef", "run_abc123", "output")

SUPERJSON_PACKET = CachedPacket(
    data=b'{"json":{"pages":[1,2,3],"at":"2024-01-02T03:04:05.000Z"},'
    b'"meta":{"values":{"at":["Date"]}}}',
    data_type="application/super+json",
    offloaded=True,
    json_body=b'{"pages":[1,2,3],"at":"2024-01-02T03:04:05.000Z"}',
)


def make_worker(url: str, **options: object) -> TieredOutputCache:
    """Return the cache of one simulated worker process: its own memory and
    its own Redis connection."""
    shared = SharedCache.from_url(url, prefix=PREFIX, wait_initial=0.005, wait_max=0.02)
    return TieredOutputCache(shared, ttl=60.0, **options)  # type: ignore[arg-type]


def test_pack_packet_round_trip() -> None:
    unpacked = unpack_packet(pack_packet(SUPERJSON_PACKET))

    assert unpacked == SUPERJSON_PACKET


def test_pack_packet_json_body_stored_once() -> None:
    body = b'{"words":1234}'
    packet = CachedPacket(data=body, data_type="application/json", offloaded=False, json_body=body)

    packed = pack_packet(packet)
    unpacked = unpack_packet(packed)

    assert packed.count(body) == 1
    assert unpacked == packet
    assert unpacked is not None
    assert unpacked.json_body is unpacked.data


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x02\x00\x00\x00\x02{}",
        b"\x01\x00\x00\x00\x02{}",
        b"\x01\x00\x00\x00\x05[1,2]",
        b"\x01\x00\x00\x00\x03{x}",
        pack_packet(SUPERJSON_PACKET)[:60],
    ],
)
def test_unpack_packet_rejects_malformed(raw: bytes) -> None:
    assert unpack_packet(raw) is None


def test_shared_key_names_every_part() -> None:
    assert shared_key(OUTPUT_KEY) == "output|0123456789abcdef|run_abc123|http://127.0.0.1:1234"


def test_shared_key_encodes_branch() -> None:
    key = OUTPUT_KEY._replace(environment="0123456789abcdef:fix|50%")

    assert shared_key(key) == (
        "output|0123456789abcdef:fix%7C50%25|run_abc123|http://127.0.0.1:1234"
    )


def test_tiered_second_worker_reads_redis(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    first = make_worker(redis_server.url)
    second = make_worker(redis_server.url)
    downloads: list[str] = []

    def download() -> CachedPacket:
        downloads.append("download")
        return SUPERJSON_PACKET

    assert first.get_or_load(OUTPUT_KEY, download) == SUPERJSON_PACKET
    assert second.get_or_load(OUTPUT_KEY, download) == SUPERJSON_PACKET
    redis_client.config_resetstat()
    assert second.get_or_load(OUTPUT_KEY, download) == SUPERJSON_PACKET

    assert downloads == ["download"]
    # The second worker's repeat is served from its own memory.
    assert redis_client.info("commandstats").get("cmdstat_get") is None
    assert redis_client.pttl(PREFIX + "value:" + shared_key(OUTPUT_KEY)) <= 60_000
    assert second.snapshot()["redis_hits"] == 1
    assert first.snapshot()["redis_stores"] == 1


def test_tiered_run_kind_stays_local(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    first = make_worker(redis_server.url)
    second = make_worker(redis_server.url)
    run_key = OUTPUT_KEY._replace(kind="run")
    loads: list[str] = []

    def load() -> dict[str, str]:
        loads.append("load")
        return {"status": "COMPLETED"}

    first.get_or_load(run_key, load)
    second.get_or_load(run_key, load)

    assert loads == ["load", "load"]
    assert redis_client.keys("*") == []


def test_tiered_store_false_skips_redis(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    worker = make_worker(redis_server.url)

    worker.get_or_load(OUTPUT_KEY, lambda: SUPERJSON_PACKET, store=lambda packet: False)

    assert redis_client.keys(PREFIX + "value:*") == []
    assert redis_client.keys(PREFIX + "lock:*") == []


def test_tiered_foreign_value_is_miss(
    redis_server: RedisServer, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    worker = make_worker(redis_server.url)
    redis_client.set(PREFIX + "value:" + shared_key(OUTPUT_KEY), b"\x00not a packet")

    assert worker.get_or_load(OUTPUT_KEY, lambda: SUPERJSON_PACKET) == SUPERJSON_PACKET

    # The value is read twice: on the first lookup and again under the lock.
    messages = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    assert messages == {
        "Ignoring the shared cache value of output of run run_abc123: it is not a packet"
        " in format 1."
    }
    # The loaded packet replaced the foreign value.
    stored = redis_client.get(PREFIX + "value:" + shared_key(OUTPUT_KEY))
    assert isinstance(stored, bytes)
    assert unpack_packet(stored[1:]) == SUPERJSON_PACKET


def test_tiered_redis_down_still_loads(caplog: pytest.LogCaptureFixture) -> None:
    worker = make_worker(f"redis://127.0.0.1:{find_free_port()}/0")
    loads: list[str] = []

    def download() -> CachedPacket:
        loads.append("download")
        return SUPERJSON_PACKET

    assert worker.get_or_load(OUTPUT_KEY, download) == SUPERJSON_PACKET
    assert worker.get_or_load(OUTPUT_KEY, download) == SUPERJSON_PACKET

    assert loads == ["download"]
    assert worker.snapshot()["redis_errors"] >= 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_tiered_one_download_for_all_workers(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    workers = [make_worker(redis_server.url) for _ in range(4)]
    downloads: list[int] = []
    results: list[CachedPacket] = []
    start = threading.Barrier(4 * 8)
    downloading = threading.Event()

    def download() -> CachedPacket:
        downloads.append(1)
        downloading.set()
        # Keep the lock until another worker has waited for it.
        for _ in range(1000):
            if sum(w.shared.stats.lock_waits for w in workers) > 0:
                break
            threading.Event().wait(0.005)
        return SUPERJSON_PACKET

    def poll(worker: TieredOutputCache) -> None:
        start.wait(timeout=10)
        results.append(worker.get_or_load(OUTPUT_KEY, download))

    threads = [
        threading.Thread(target=poll, args=(worker,)) for worker in workers for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert len(downloads) == 1
    assert results == [SUPERJSON_PACKET] * 32
    assert sum(w.shared.stats.lock_waits for w in workers) > 0


# -- factory ---------------------------------------------------------------------


def _trigger_config(**overrides: object) -> TriggerOutputsConfig:
    app = Flask(__name__)
    app.config.update(
        TRIGGER_SECRET_KEY="tr_dev_shared_tier_test",
        TRIGGER_API_URL="http://127.0.0.1:1234",
        **overrides,
    )
    return load_config(app)


def test_create_output_cache_per_setting(redis_server: RedisServer) -> None:
    redis_keys = {
        "TRIGGER_OUTPUTS_REDIS_URL": redis_server.url,
        "TRIGGER_OUTPUTS_REDIS_PREFIX": "app:",
        "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT": 120.0,
    }

    tiered = create_output_cache(_trigger_config(**redis_keys))
    local = create_output_cache(_trigger_config())
    memoryless = create_output_cache(_trigger_config(TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0))
    shared_only = create_output_cache(
        _trigger_config(TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0, **redis_keys)
    )

    assert isinstance(tiered, TieredOutputCache)
    assert tiered.shared.prefix == "app:"
    assert tiered.shared.lock_timeout == 120.0
    assert tiered.ttl == 600.0
    assert tiered.key("run_abc", "output") == CacheKey(
        "http://127.0.0.1:1234", environment_id("tr_dev_shared_tier_test"), "run_abc", "output"
    )
    assert type(local) is OutputCache
    assert local.enabled
    assert type(memoryless) is OutputCache
    assert not memoryless.enabled
    assert isinstance(shared_only, TieredOutputCache)
    assert not shared_only.enabled


# -- through the extension ---------------------------------------------------------


def _worker_app(api_url: str, secret_key: str, redis_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        TRIGGER_SECRET_KEY=secret_key,
        TRIGGER_API_URL=api_url,
        TRIGGER_OUTPUTS_REDIS_URL=redis_url,
        TRIGGER_OUTPUTS_REDIS_PREFIX=PREFIX,
    )
    TriggerOutputs(app)
    return app


def test_extension_workers_share_downloads(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    # Two apps stand for two gunicorn workers: separate memory, one Redis.
    emulator = Emulator("tr_dev_shared_tier_extension")
    output = {"pages": [{"url": f"https://example.com/{i}", "words": i} for i in range(500)]}
    with EmulatorServer(emulator) as api:
        run_id = emulator.create_run("site-crawl", output=output, offload_output=True)
        workers = [_worker_app(api.url, emulator.secret_key, redis_server.url) for _ in range(2)]
        bodies = []
        for app in workers * 3:
            response = app.test_client().get("/api/crawl", query_string={"runId": run_id})
            assert response.status_code == 200
            bodies.append(response.get_json())

        downloads = sum(emulator.stats.downloads.values())

    assert downloads == 1
    for body in bodies:
        assert body["output"] == output
        assert body["outputOffloaded"] is True
    assert isinstance(get_state(workers[1]).cache, TieredOutputCache)
    assert len(redis_client.keys(PREFIX + "value:output|*")) == 1


def test_extension_redis_down_still_serves(caplog: pytest.LogCaptureFixture) -> None:
    emulator = Emulator("tr_dev_shared_tier_extension")
    with EmulatorServer(emulator) as api:
        run_id = emulator.create_run("site-crawl", output={"ok": True}, offload_output=True)
        app = _worker_app(api.url, emulator.secret_key, f"redis://127.0.0.1:{find_free_port()}")

        response = app.test_client().get("/api/crawl", query_string={"runId": run_id})

    assert response.status_code == 200
    assert response.get_json()["output"] == {"ok": True}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "requests go on without it" in warnings[0].getMessage()
