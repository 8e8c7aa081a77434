"""Tests for the extension object, its per-app state and several apps."""

from __future__ import annotations

import json

import pytest
import redis
import requests
from extension_tasks import make_app
from flask import Flask
from redis_server import RedisServer

from flask_trigger_outputs.cache import OutputCache
from flask_trigger_outputs.client import TriggerClient
from flask_trigger_outputs.config import ConfigurationError
from flask_trigger_outputs.emulator import Emulator, EmulatorServer
from flask_trigger_outputs.extension import TriggerOutputs, TriggerOutputsState, get_state
from flask_trigger_outputs.helpers import get_run_output
from flask_trigger_outputs.packets import PacketDownloader
from flask_trigger_outputs.reader import RunReader


def test_init_app_stores_state(server: EmulatorServer) -> None:
    app = make_app(server)

    state = app.extensions["trigger_outputs"]

    assert isinstance(state, TriggerOutputsState)
    assert isinstance(state.client, TriggerClient)
    assert isinstance(state.downloader, PacketDownloader)
    assert isinstance(state.reader, RunReader)
    assert isinstance(state.cache, OutputCache)
    assert state.reader.client is state.client
    assert state.reader.downloader is state.downloader
    assert state.reader.cache is state.cache
    assert state.config.api_url == server.url
    assert state.client.api_url == server.url


def test_init_app_passes_settings(server: EmulatorServer) -> None:
    app = make_app(
        server,
        TRIGGER_OUTPUTS_CONNECT_TIMEOUT=1.5,
        TRIGGER_OUTPUTS_READ_TIMEOUT=7,
        TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE=2048,
        TRIGGER_OUTPUTS_OFFLOAD_THRESHOLD=4096,
        TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0,
        TRIGGER_PREVIEW_BRANCH="feature-x",
    )

    state = get_state(app)

    assert state.client.connect_timeout == 1.5
    assert state.client.read_timeout == 7.0
    assert state.client.offload_threshold == 4096
    assert state.client.branch == "feature-x"
    assert state.downloader.max_size == 2048
    assert state.cache.enabled is False


def test_init_app_twice_raises(server: EmulatorServer) -> None:
    app = make_app(server)

    with pytest.raises(RuntimeError) as info:
        TriggerOutputs(app)

    assert str(info.value) == (
        "A 'TriggerOutputs' instance is already registered on app 'test_app'. Call init_app"
        " only once per app, or use the existing instance from"
        " app.extensions['trigger_outputs'].extension."
    )


def test_init_app_missing_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIGGER_SECRET_KEY", raising=False)
    app = Flask("no_key")

    with pytest.raises(ConfigurationError) as info:
        TriggerOutputs(app)

    assert info.value.key == "TRIGGER_SECRET_KEY"
    assert "trigger_outputs" not in app.extensions
    assert "trigger_outputs" not in app.blueprints


def test_extension_without_app_then_init(server: EmulatorServer) -> None:
    extension = TriggerOutputs()
    app = Flask("late")
    app.config.update(TRIGGER_API_URL=server.url, TRIGGER_SECRET_KEY=server.secret_key)

    extension.init_app(app)

    assert get_state(app).extension is extension
    assert "trigger_outputs" in app.blueprints
    assert not hasattr(extension, "app")


def open_pools(session: requests.Session) -> int:
    """Count the connection pools a session keeps open, over all adapters."""
    return sum(len(adapter.poolmanager.pools) for adapter in session.adapters.values())


def test_state_close_closes_connections(server: EmulatorServer) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0)
    state = get_state(app)
    run_id = server.emulator.create_run(output={"pages": ["x" * 100]}, offload_output=True)
    state.reader.get_output(run_id)
    assert open_pools(state.client._session) == 1
    assert open_pools(state.downloader._session) == 1

    state.close()

    assert open_pools(state.client._session) == 0
    assert open_pools(state.downloader._session) == 0
    # A closed state still works: the next request opens a new connection.
    assert state.reader.get_output(run_id) == {"pages": ["x" * 100]}


def test_state_close_closes_shared_tier(
    server: EmulatorServer, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    app = make_app(server, TRIGGER_OUTPUTS_REDIS_URL=redis_server.url)
    shared = get_state(app).cache.shared  # type: ignore[attr-defined]
    connection_id = str(shared.client.client_id())
    assert connection_id in {client["id"] for client in redis_client.client_list()}

    get_state(app).close()

    assert connection_id not in {client["id"] for client in redis_client.client_list()}


def test_get_state_without_init() -> None:
    app = Flask("bare")

    with pytest.raises(RuntimeError) as info:
        get_state(app)

    assert str(info.value) == (
        "flask-trigger-outputs is not initialized on app 'bare'."
        " Was TriggerOutputs(app) or init_app(app) called?"
    )


def test_blueprint_fresh_per_extension() -> None:
    first = TriggerOutputs()
    second = TriggerOutputs()

    assert first.blueprint is not second.blueprint
    assert first.blueprint.name == "trigger_outputs"


def test_blueprint_endpoints(server: EmulatorServer) -> None:
    app = make_app(server)

    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}

    assert rules["/api/crawl"] == "trigger_outputs.crawl"
    assert rules["/api/crawl/status"] == "trigger_outputs.crawl_status"
    assert rules["/api/site-audit"] == "trigger_outputs.site_audit"
    assert rules["/api/ai-strategy"] == "trigger_outputs.ai_strategy"
    assert rules["/api/audit"] == "trigger_outputs.audit"
    assert rules["/api/content/analyze"] == "trigger_outputs.content_analyze"


def test_register_blueprint_false(server: EmulatorServer) -> None:
    app = make_app(server, register_blueprint=False)

    assert "trigger_outputs" not in app.blueprints
    assert app.test_client().get("/api/crawl?runId=run_x").status_code == 404


def test_one_extension_two_apps(server: EmulatorServer) -> None:
    extension = TriggerOutputs()
    apps = []
    for name, task_id in (("first", "site-crawl"), ("second", "site-audit")):
        app = Flask(name)
        app.config.update(
            TRIGGER_API_URL=server.url,
            TRIGGER_SECRET_KEY=server.secret_key,
            TRIGGER_OUTPUTS_TASK_CRAWL=task_id,
        )
        extension.init_app(app)
        apps.append(app)

    first, second = (get_state(app) for app in apps)

    assert first is not second
    assert first.client is not second.client
    assert first.config.task_crawl == "site-crawl"
    assert second.config.task_crawl == "site-audit"
    for app, task_id in zip(apps, ("site-crawl", "site-audit"), strict=True):
        response = app.test_client().post(
            "/api/crawl", data="{}", headers={"Content-Type": "application/json"}
        )
        assert response.get_json()["taskIdentifier"] == task_id


def test_two_apps_two_emulators(server: EmulatorServer) -> None:
    other_emulator = Emulator(secret_key="tr_prod_otherkey123")
    other_emulator.register_task("site-crawl", lambda payload, context: {"from": "other"})
    server.emulator.register_task("site-crawl", lambda payload, context: {"from": "first"})

    with EmulatorServer(other_emulator) as other:
        first = make_app(server, name="first")
        second = make_app(other, name="second", TRIGGER_OUTPUTS_URL_PREFIX="/v2")
        first_run = server.emulator.trigger("site-crawl", {})
        second_run = other_emulator.trigger("site-crawl", {})
        server.emulator.wait_for_run(first_run)
        other_emulator.wait_for_run(second_run)

        first_body = first.test_client().get(f"/api/crawl?runId={first_run}").get_json()
        second_body = second.test_client().get(f"/v2/api/crawl?runId={second_run}").get_json()
        # Each app's key and host only know that app's runs.
        cross = first.test_client().get(f"/api/crawl?runId={second_run}")

        with second.app_context():
            second_output = get_run_output(second_run)

    assert first_body["output"] == {"from": "first"}
    assert second_body["output"] == {"from": "other"}
    assert second_output == {"from": "other"}
    assert cross.status_code == 404
    assert get_state(first).config.environment == "dev"
    assert get_state(second).config.environment == "prod"
    assert server.emulator.stats.api_calls["retrieve"] == 2
    # The helper reads the finished run from the second app's cache.
    assert other_emulator.stats.api_calls["retrieve"] == 1


def test_helpers_in_app_context(server: EmulatorServer) -> None:
    app = make_app(server)
    run_id = server.emulator.create_run("site-crawl", output={"items": [1, 2]})

    with app.app_context():
        assert get_run_output(run_id) == {"items": [1, 2]}


def test_config_error_message_never_has_key(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Flask("bad_url")
    app.config.update(TRIGGER_SECRET_KEY="tr_dev_verysecret", TRIGGER_API_URL="ftp://example")

    with pytest.raises(ConfigurationError) as info:
        TriggerOutputs(app)

    assert "verysecret" not in str(info.value)
    assert "verysecret" not in repr(info.value)


def test_state_repr_hides_secret_key(server: EmulatorServer) -> None:
    app = make_app(server)

    text = repr(get_state(app))

    assert server.secret_key not in text
    assert server.secret_key not in json.dumps(app.extensions, default=repr)
