"""Tests for reading and validating the extension's configuration."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from flask import Flask

from flask_trigger_outputs.config import (
    DEFAULT_API_URL,
    DEFAULTS,
    ConfigurationError,
    RedisConfig,
    describe_config,
    load_config,
    load_redis_config,
    redact_redis_url,
    redact_secret_key,
)

SHARE = "a fraction above 0 and at most 1, such as 0.25"
SECRET_KEY = "tr_dev_Q2xlYXJseU5vdEFSZWFsS2V5"
ENV_KEYS = ("TRIGGER_SECRET_KEY", "TRIGGER_API_URL", "TRIGGER_PREVIEW_BRANCH")


@pytest.fixture(autouse=True)
def _clear_trigger_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def load_error(**config: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        load_config(make_app(**config))
    return info.value


def test_load_config_defaults_visible_in_app_config() -> None:
    app = make_app(TRIGGER_SECRET_KEY=SECRET_KEY)

    config = load_config(app)

    for key, default in DEFAULTS.items():
        assert app.config[key] == default, key
    assert app.config["TRIGGER_API_URL"] == DEFAULT_API_URL
    assert app.config["TRIGGER_PREVIEW_BRANCH"] is None
    assert config.api_url == "https://api.trigger.dev"
    assert config.task_crawl == "site-crawl"
    assert config.task_audit == "smart-audit"
    assert config.max_payload_size == 3 * 1024 * 1024
    assert config.max_output_size == 10 * 1024 * 1024
    assert config.offload_threshold == 131072
    assert config.max_tries == 5
    assert config.poll_coalesce == 1.0
    assert config.url_prefix == ""
    assert config.preview_branch is None


def test_load_config_keeps_app_values() -> None:
    app = make_app(
        TRIGGER_SECRET_KEY="tr_prod_abc123",
        TRIGGER_API_URL="http://127.0.0.1:8030/",
        TRIGGER_PREVIEW_BRANCH="feature-x",
        TRIGGER_OUTPUTS_URL_PREFIX="/v2/",
        TRIGGER_OUTPUTS_TASK_CRAWL="crawl-v2",
        TRIGGER_OUTPUTS_READ_TIMEOUT=12,
        TRIGGER_OUTPUTS_MAX_TRIES="3",
        TRIGGER_OUTPUTS_CACHE_MAX_BYTES=0,
        TRIGGER_OUTPUTS_POLL_COALESCE=0,
    )

    config = load_config(app)

    assert config.secret_key == "tr_prod_abc123"
    assert config.environment == "prod"
    assert config.api_url == "http://127.0.0.1:8030"
    assert config.preview_branch == "feature-x"
    assert config.url_prefix == "/v2"
    assert config.task_crawl == "crawl-v2"
    assert config.read_timeout == 12.0
    assert isinstance(config.read_timeout, float)
    assert config.max_tries == 3
    assert config.cache_max_bytes == 0
    assert config.poll_coalesce == 0.0


def test_load_config_environment_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGER_SECRET_KEY", "tr_stg_fromenv")
    monkeypatch.setenv("TRIGGER_API_URL", "https://trigger.example.com")
    monkeypatch.setenv("TRIGGER_PREVIEW_BRANCH", "preview-1")
    app = make_app()

    config = load_config(app)

    assert config.secret_key == "tr_stg_fromenv"
    assert config.api_url == "https://trigger.example.com"
    assert config.preview_branch == "preview-1"
    assert app.config["TRIGGER_API_URL"] == "https://trigger.example.com"


def test_load_config_app_value_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGER_SECRET_KEY", "tr_stg_fromenv")
    monkeypatch.setenv("TRIGGER_API_URL", "https://trigger.example.com")

    config = load_config(make_app(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_API_URL=None))

    assert config.secret_key == SECRET_KEY
    assert config.api_url == "https://trigger.example.com"


def test_load_config_missing_secret_key() -> None:
    error = load_error()

    assert error.key == "TRIGGER_SECRET_KEY"
    assert str(error).startswith(
        "TRIGGER_SECRET_KEY is not set. Set it in the app config or the environment to a "
        "Trigger.dev secret key of the form tr_<environment>_..."
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("sk_live_Q2xlYXJseU5vdEFSZWFsS2V5", "is not a Trigger.dev secret key"),
        ("tr_dev_Q2xlYXJse U5vdEFSZWFsS2V5", "is not a Trigger.dev secret key"),
        ("tr_dev_Q2xlYXJseU5vdEFSZWFsS2V5\n", "has leading or trailing whitespace"),
        ("tr_pat_Q2xlYXJseU5vdEFSZWFsS2V5", "is a personal access token"),
        (b"tr_dev_Q2xlYXJseU5vdEFSZWFsS2V5", "must be a string, got bytes"),
    ],
)
def test_load_config_invalid_secret_key_not_echoed(value: object, fragment: str) -> None:
    error = load_error(TRIGGER_SECRET_KEY=value)

    assert error.key == "TRIGGER_SECRET_KEY"
    assert fragment in str(error)
    assert "Q2xlYXJse" not in str(error)


def test_load_config_unknown_key_environment_warns(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_trigger_outputs")

    config = load_config(make_app(TRIGGER_SECRET_KEY="tr_qa_Q2xlYXJseU5vdEFSZWFsS2V5"))

    assert config.environment == "qa"
    assert len(caplog.records) == 1
    assert "unknown environment prefix 'tr_qa_'" in caplog.records[0].getMessage()
    assert "Q2xlYXJse" not in caplog.text


@pytest.mark.parametrize(
    "value",
    ["api.trigger.dev", "ftp://api.trigger.dev", "https://", "https://h:99999", "", 42],
)
def test_load_config_invalid_api_url(value: object) -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_API_URL=value)

    assert error.key == "TRIGGER_API_URL"
    assert "an http or https URL with a host" in str(error)


def test_load_config_api_url_query_rejected() -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_API_URL="https://h.example/?a=1")

    assert str(error) == (
        "TRIGGER_API_URL must not have a query or fragment, got 'https://h.example/?a=1'. "
        "Set it to an http or https URL with a host, such as https://api.trigger.dev."
    )


def test_load_config_api_url_credentials_not_echoed() -> None:
    error = load_error(
        TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_API_URL="https://user:hunter2@h.example"
    )

    assert "must not contain a user name or password" in str(error)
    assert "hunter2" not in str(error)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("TRIGGER_OUTPUTS_CONNECT_TIMEOUT", 0, "a number of seconds above 0"),
        ("TRIGGER_OUTPUTS_READ_TIMEOUT", -1.5, "a number of seconds above 0"),
        ("TRIGGER_OUTPUTS_READ_TIMEOUT", "soon", "a number of seconds above 0"),
        ("TRIGGER_OUTPUTS_MAX_RETRY_TIME", float("inf"), "a number of seconds above 0"),
        ("TRIGGER_OUTPUTS_CACHE_TTL", True, "a number of seconds above 0"),
        ("TRIGGER_OUTPUTS_POLL_COALESCE", -0.1, "a number of seconds of 0 or more"),
        ("TRIGGER_OUTPUTS_MAX_TRIES", 0, "a whole number of 1 or more"),
        ("TRIGGER_OUTPUTS_MAX_TRIES", 2.5, "a whole number of 1 or more"),
        ("TRIGGER_OUTPUTS_OFFLOAD_THRESHOLD", None, "a whole number of 1 or more"),
        ("TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE", "3MB", "a whole number of 1 or more"),
        ("TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE", 0, "a whole number of 1 or more"),
        ("TRIGGER_OUTPUTS_CACHE_MAX_BYTES", -1, "a whole number of 0 or more"),
        (
            "TRIGGER_OUTPUTS_CACHE_MAX_ENTRY_SHARE",
            0,
            "a fraction above 0 and at most 1, such as 0.25",
        ),
        (
            "TRIGGER_OUTPUTS_CACHE_MAX_ENTRY_SHARE",
            1.5,
            "a fraction above 0 and at most 1, such as 0.25",
        ),
    ],
)
def test_load_config_invalid_number(key: str, value: object, expected: str) -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, **{key: value})

    assert error.key == key
    assert str(error) == f"{key} must be {expected}, got {value!r}."


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_load_config_invalid_allow_redirect(value: object) -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_OUTPUTS_ALLOW_REDIRECT=value)

    assert error.key == "TRIGGER_OUTPUTS_ALLOW_REDIRECT"
    assert str(error) == f"TRIGGER_OUTPUTS_ALLOW_REDIRECT must be True or False, got {value!r}."


def test_load_config_invalid_number_message() -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_OUTPUTS_MAX_TRIES=0)

    assert str(error) == "TRIGGER_OUTPUTS_MAX_TRIES must be a whole number of 1 or more, got 0."


@pytest.mark.parametrize("value", ["", "site crawl", "crawl\u00e9", "x" * 129, None])
def test_load_config_invalid_task_id(value: object) -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_OUTPUTS_TASK_SITE_AUDIT=value)

    assert error.key == "TRIGGER_OUTPUTS_TASK_SITE_AUDIT"
    assert str(error).startswith(
        "TRIGGER_OUTPUTS_TASK_SITE_AUDIT must be a task identifier of 1 to 128 printable ASCII"
    )


@pytest.mark.parametrize("value", ["api", 3, None])
def test_load_config_invalid_url_prefix(value: object) -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_OUTPUTS_URL_PREFIX=value)

    assert error.key == "TRIGGER_OUTPUTS_URL_PREFIX"
    assert "a path starting with '/'" in str(error)


def test_load_config_invalid_preview_branch() -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_PREVIEW_BRANCH="main\n")

    assert error.key == "TRIGGER_PREVIEW_BRANCH"


def test_config_repr_hides_secret_key() -> None:
    config = load_config(make_app(TRIGGER_SECRET_KEY=SECRET_KEY))

    assert SECRET_KEY not in repr(config)
    assert "api_url='https://api.trigger.dev'" in repr(config)


def test_config_is_frozen() -> None:
    config = load_config(make_app(TRIGGER_SECRET_KEY=SECRET_KEY))

    with pytest.raises(AttributeError):
        config.api_url = "https://other.example"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tr_dev_abc", "tr_dev_****"),
        ("tr_prod_abc", "tr_prod_****"),
        ("nonsense", "****"),
        ("", "****"),
    ],
)
def test_redact_secret_key(value: str, expected: str) -> None:
    assert redact_secret_key(value) == expected


def test_load_config_redis_defaults_visible() -> None:
    app = make_app(TRIGGER_SECRET_KEY=SECRET_KEY)

    config = load_config(app)

    assert app.config["TRIGGER_OUTPUTS_REDIS_URL"] is None
    assert app.config["TRIGGER_OUTPUTS_REDIS_PREFIX"] == "trigger-outputs:"
    assert app.config["TRIGGER_OUTPUTS_REDIS_TIMEOUT"] == 0.5
    assert app.config["TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT"] == 95.0
    assert app.config["TRIGGER_OUTPUTS_REDIS_RETRY_AFTER"] == 30.0
    assert config.redis == RedisConfig()
    assert not config.redis.enabled


def test_load_config_redis_keys_validated_without_url() -> None:
    error = load_error(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_OUTPUTS_REDIS_TIMEOUT="fast")

    assert error.key == "TRIGGER_OUTPUTS_REDIS_TIMEOUT"


def test_load_config_lock_timeout_follows_download_time() -> None:
    app = make_app(
        TRIGGER_SECRET_KEY=SECRET_KEY,
        TRIGGER_OUTPUTS_MAX_RETRY_TIME=120,
        TRIGGER_OUTPUTS_CONNECT_TIMEOUT=2,
        TRIGGER_OUTPUTS_READ_TIMEOUT=10,
    )

    config = load_config(app)

    assert config.download_time == 132.0
    assert config.redis.lock_timeout == 132.0
    assert app.config["TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT"] == 132.0


def test_load_config_short_lock_timeout_warns(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(
        TRIGGER_SECRET_KEY=SECRET_KEY,
        TRIGGER_OUTPUTS_REDIS_URL="redis://127.0.0.1:6379/0",
        TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT=30,
    )

    with caplog.at_level(logging.WARNING, logger="flask_trigger_outputs.config"):
        config = load_config(app)

    assert config.redis.lock_timeout == 30.0
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT is 30 s" in message
    assert "the 95 s one download may take" in message


def test_load_config_short_lock_timeout_quiet_without_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(TRIGGER_SECRET_KEY=SECRET_KEY, TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT=30)

    with caplog.at_level(logging.WARNING, logger="flask_trigger_outputs.config"):
        load_config(app)

    assert caplog.records == []


def test_load_redis_config_reads_strings() -> None:
    app_config: dict[str, object] = {
        "TRIGGER_OUTPUTS_REDIS_URL": "redis://:pw@cache.internal:6380/2",
        "TRIGGER_OUTPUTS_REDIS_PREFIX": "myapp:",
        "TRIGGER_OUTPUTS_REDIS_TIMEOUT": " 0.25 ",
        "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT": "45",
    }

    config = load_redis_config(app_config, download_time=40.0)

    assert config == RedisConfig(
        url="redis://:pw@cache.internal:6380/2",
        prefix="myapp:",
        timeout=0.25,
        lock_timeout=45.0,
        retry_after=30.0,
    )
    assert config.enabled
    assert "pw" not in repr(config)


def test_load_redis_config_empty_url_off() -> None:
    app_config: dict[str, object] = {"TRIGGER_OUTPUTS_REDIS_URL": ""}

    config = load_redis_config(app_config, download_time=40.0)

    assert config.url is None
    assert config.lock_timeout == 40.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "TRIGGER_OUTPUTS_REDIS_URL",
            "http://user:secret@cache.internal:6379",
            "TRIGGER_OUTPUTS_REDIS_URL must be a redis://, rediss:// or unix:// URL such as"
            " 'redis://localhost:6379/0', or None to turn the shared cache off,"
            " got 'http://***@cache.internal:6379'.",
        ),
        (
            "TRIGGER_OUTPUTS_REDIS_URL",
            6379,
            "TRIGGER_OUTPUTS_REDIS_URL must be a redis://, rediss:// or unix:// URL such as"
            " 'redis://localhost:6379/0', or None to turn the shared cache off, got 6379.",
        ),
        (
            "TRIGGER_OUTPUTS_REDIS_PREFIX",
            None,
            "TRIGGER_OUTPUTS_REDIS_PREFIX must be a string such as 'myapp:', got None.",
        ),
        (
            "TRIGGER_OUTPUTS_REDIS_TIMEOUT",
            0,
            "TRIGGER_OUTPUTS_REDIS_TIMEOUT must be a number of seconds above 0, got 0.",
        ),
        (
            "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT",
            "soon",
            "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT must be a number of seconds above 0, got 'soon'.",
        ),
        (
            "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER",
            float("inf"),
            "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER must be a number of seconds above 0, got inf.",
        ),
        (
            "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER",
            True,
            "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER must be a number of seconds above 0, got True.",
        ),
    ],
)
def test_load_redis_config_rejects_invalid(key: str, value: object, message: str) -> None:
    app_config: dict[str, object] = {"TRIGGER_OUTPUTS_REDIS_URL": "redis://localhost:6379/0"}
    app_config[key] = value

    with pytest.raises(ConfigurationError) as info:
        load_redis_config(app_config, download_time=95.0)

    assert str(info.value) == message
    assert info.value.key == key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:pw@host:6379/0", "redis://***@host:6379/0"),
        ("rediss://:pw@host/1", "rediss://***@host/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        (
            "redis://host:6379/0?username=app&password=pw&ssl_cert_reqs=none",
            "redis://host:6379/0?username=***&password=***&ssl_cert_reqs=none",
        ),
        ("unix:///run/redis.sock?db=2&password=pw", "unix:///run/redis.sock?db=2&password=***"),
    ],
)
def test_redact_redis_url(url: str, expected: str) -> None:
    assert redact_redis_url(url) == expected


def test_describe_config_lists_redis_keys() -> None:
    config = load_config(
        make_app(
            TRIGGER_SECRET_KEY=SECRET_KEY,
            TRIGGER_OUTPUTS_REDIS_URL="redis://app:hunter2@cache.internal:6379/0",
        )
    )

    rows = dict(describe_config(config))

    assert rows["TRIGGER_OUTPUTS_REDIS_URL"] == "redis://***@cache.internal:6379/0"
    assert rows["TRIGGER_OUTPUTS_REDIS_PREFIX"] == "trigger-outputs:"
    assert rows["TRIGGER_OUTPUTS_REDIS_TIMEOUT"] == 0.5
    assert rows["TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT"] == 95.0
    assert rows["TRIGGER_OUTPUTS_REDIS_RETRY_AFTER"] == 30.0
    assert "hunter2" not in repr(rows)


def test_load_config_without_redis_installed() -> None:
    # None in sys.modules makes "import redis" raise ImportError, as it does
    # without the redis extra.
    script = """
import sys
sys.modules["redis"] = None
from flask import Flask
from flask_trigger_outputs import TriggerOutputs
from flask_trigger_outputs.config import describe_config
app = Flask("no_redis")
app.config["TRIGGER_SECRET_KEY"] = "tr_dev_no_redis_installed"
TriggerOutputs(app)
print(app.config["TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT"])
print(len(describe_config(app.extensions["trigger_outputs"].config)))
"""

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["95.0", str(len(DEFAULTS) + 8)]
