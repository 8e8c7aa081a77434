"""Read and validate the extension's configuration from ``app.config``.

:func:`load_config` runs once in :meth:`TriggerOutputs.init_app`. It puts
every default into ``app.config`` with ``setdefault`` so the values in effect
are visible there, validates each key and returns a frozen
:class:`TriggerOutputsConfig`. A missing or invalid value raises
:class:`ConfigurationError` naming the key and the expected form. No message
or log line contains the secret key, only its environment prefix.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Flask

# The client checks the same task identifiers and owns the default URL, so
# both are defined there once. DEFAULT_API_URL stays importable from here.
from .client import _TASK_ID_PATTERN
from .client import DEFAULT_API_URL as DEFAULT_API_URL
from .shared_cache import DEFAULT_PREFIX

logger = logging.getLogger(__name__)

#: Environment prefixes of Trigger.dev secret keys: development, production,
#: staging and preview branches.
KNOWN_KEY_ENVIRONMENTS = ("dev", "prod", "stg", "pr")

# "tr_" + environment + "_" + key material, with no whitespace anywhere.
_SECRET_KEY_PATTERN = re.compile(r"tr_([a-z]+)_[^\s]+")

#: Keys read from the environment when the app config does not set them.
#: The names match the ones the official TypeScript SDK reads.
ENV_FALLBACK_KEYS = ("TRIGGER_SECRET_KEY", "TRIGGER_API_URL", "TRIGGER_PREVIEW_BRANCH")

#: Default of every prefixed key, in the order the docs list them.
DEFAULTS: Mapping[str, Any] = {
    "TRIGGER_OUTPUTS_URL_PREFIX": "",
    "TRIGGER_OUTPUTS_TASK_CONTENT_EXTRACTION": "content-extraction",
    "TRIGGER_OUTPUTS_TASK_CONTENT_ANALYSIS": "content-analysis",
    "TRIGGER_OUTPUTS_TASK_CRAWL": "site-crawl",
    "TRIGGER_OUTPUTS_TASK_SITE_AUDIT": "site-audit",
    "TRIGGER_OUTPUTS_TASK_AI_STRATEGY": "ai-strategy",
    "TRIGGER_OUTPUTS_TASK_AUDIT": "smart-audit",
    "TRIGGER_OUTPUTS_CONNECT_TIMEOUT": 5.0,
    "TRIGGER_OUTPUTS_READ_TIMEOUT": 30.0,
    "TRIGGER_OUTPUTS_MAX_TRIES": 5,
    "TRIGGER_OUTPUTS_MAX_RETRY_TIME": 60.0,
    "TRIGGER_OUTPUTS_OFFLOAD_THRESHOLD": 128 * 1024,
    "TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE": 3 * 1024 * 1024,
    "TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE": 10 * 1024 * 1024,
    "TRIGGER_OUTPUTS_CACHE_MAX_BYTES": 64 * 1024 * 1024,
    "TRIGGER_OUTPUTS_CACHE_TTL": 600.0,
    "TRIGGER_OUTPUTS_CACHE_MAX_ENTRY_SHARE": 0.25,
    "TRIGGER_OUTPUTS_POLL_COALESCE": 1.0,
    "TRIGGER_OUTPUTS_ALLOW_REDIRECT": False,
}

#: Defaults of the shared Redis tier's keys. A URL of ``None`` turns the tier
#: off. ``TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT`` is missing here because its
#: default is one download's time budget (see
#: :attr:`TriggerOutputsConfig.download_time`).
REDIS_DEFAULTS: Mapping[str, Any] = {
    "TRIGGER_OUTPUTS_REDIS_URL": None,
    "TRIGGER_OUTPUTS_REDIS_PREFIX": DEFAULT_PREFIX,
    "TRIGGER_OUTPUTS_REDIS_TIMEOUT": 0.5,
    "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER": 30.0,
}

_REDIS_SCHEMES = ("redis", "rediss", "unix")
# redis-py reads these query parameters of a Redis URL as credentials.
_REDIS_CREDENTIAL_PARAMETERS = frozenset({"username", "password"})


@dataclass(frozen=True)
class RedisConfig:
    """Validated configuration of the shared Redis tier. Durations are in
    seconds."""

    #: ``TRIGGER_OUTPUTS_REDIS_URL``, or ``None`` when the tier is off. Left
    #: out of ``repr`` because it may contain a password.
    url: str | None = field(default=None, repr=False)
    #: ``TRIGGER_OUTPUTS_REDIS_PREFIX``
    prefix: str = DEFAULT_PREFIX
    #: ``TRIGGER_OUTPUTS_REDIS_TIMEOUT``: to connect and for each reply.
    timeout: float = 0.5
    #: ``TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT``: how long one process may hold
    #: the download lock of a packet. The default, 95 s, is one download's
    #: time budget with the default timeouts.
    lock_timeout: float = 95.0
    #: ``TRIGGER_OUTPUTS_REDIS_RETRY_AFTER``
    retry_after: float = 30.0

    @property
    def enabled(self) -> bool:
        """Whether a URL is set, so the shared tier is on."""
        return self.url is not None


class ConfigurationError(ValueError):
    """A configuration key is missing or has an invalid value.

    Raised by :meth:`TriggerOutputs.init_app`. The message names the key and
    the expected form, and never contains the secret key.

    :param key: the configuration key at fault.
    :param message: a full sentence saying what is wrong and what to set.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class TriggerOutputsConfig:
    """Validated configuration of one app, read once at ``init_app``.

    Durations are in seconds and sizes in bytes. Each field has the
    ``app.config`` key given in its comment.
    """

    #: ``TRIGGER_SECRET_KEY``. Excluded from ``repr`` so it cannot leak
    #: through a log line or a traceback.
    secret_key: str = field(repr=False)
    #: ``TRIGGER_API_URL``, without a trailing slash.
    api_url: str
    #: ``TRIGGER_PREVIEW_BRANCH``, sent as ``x-trigger-branch`` when set.
    preview_branch: str | None
    #: ``TRIGGER_OUTPUTS_URL_PREFIX``: empty, or a path starting with ``/``.
    url_prefix: str
    #: ``TRIGGER_OUTPUTS_TASK_CONTENT_EXTRACTION``
    task_content_extraction: str
    #: ``TRIGGER_OUTPUTS_TASK_CONTENT_ANALYSIS``
    task_content_analysis: str
    #: ``TRIGGER_OUTPUTS_TASK_CRAWL``, used by ``/api/crawl`` and ``/api/crawl/status``.
    task_crawl: str
    #: ``TRIGGER_OUTPUTS_TASK_SITE_AUDIT``
    task_site_audit: str
    #: ``TRIGGER_OUTPUTS_TASK_AI_STRATEGY``
    task_ai_strategy: str
    #: ``TRIGGER_OUTPUTS_TASK_AUDIT``
    task_audit: str
    #: ``TRIGGER_OUTPUTS_CONNECT_TIMEOUT``
    connect_timeout: float
    #: ``TRIGGER_OUTPUTS_READ_TIMEOUT``
    read_timeout: float
    #: ``TRIGGER_OUTPUTS_MAX_TRIES``: attempts per call, the first included.
    max_tries: int
    #: ``TRIGGER_OUTPUTS_MAX_RETRY_TIME``: time budget of one call's retries.
    max_retry_time: float
    #: ``TRIGGER_OUTPUTS_OFFLOAD_THRESHOLD``: payloads of this size or more
    #: are uploaded to storage before the trigger call.
    offload_threshold: int
    #: ``TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE``: largest accepted trigger payload.
    max_payload_size: int
    #: ``TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE``: largest packet downloaded.
    max_output_size: int
    #: ``TRIGGER_OUTPUTS_CACHE_MAX_BYTES``: 0 stores nothing, but concurrent
    #: loads of one run still share one call.
    cache_max_bytes: int
    #: ``TRIGGER_OUTPUTS_CACHE_TTL``
    cache_ttl: float
    #: ``TRIGGER_OUTPUTS_CACHE_MAX_ENTRY_SHARE``: largest share of
    #: ``cache_max_bytes`` that one entry may take.
    cache_max_entry_share: float
    #: ``TRIGGER_OUTPUTS_POLL_COALESCE``: window in which polls of one
    #: unfinished run share a single API call.
    poll_coalesce: float
    #: ``TRIGGER_OUTPUTS_ALLOW_REDIRECT``: whether the GET routes accept
    #: ``format=redirect``, which hands the client a presigned URL (with its
    #: signature) in a ``Location`` header.
    allow_redirect: bool
    #: The ``TRIGGER_OUTPUTS_REDIS_*`` keys of the shared tier.
    redis: RedisConfig = field(default_factory=RedisConfig)

    @property
    def download_time(self) -> float:
        """Maximum time one download may take in seconds: the retry budget,
        plus the connect and read timeouts of an attempt that starts just
        before the budget runs out.

        The read timeout bounds each wait for data, not a whole attempt, so
        a body that keeps trickling in can take longer than this.
        """
        return self.max_retry_time + self.connect_timeout + self.read_timeout

    @property
    def environment(self) -> str:
        """Environment named by the secret key's prefix, such as ``"dev"``."""
        match = _SECRET_KEY_PATTERN.fullmatch(self.secret_key)
        assert match is not None  # load_config validated the key
        return match.group(1)

    @property
    def redacted_secret_key(self) -> str:
        """The secret key with everything after its prefix masked, such as
        ``tr_dev_****``, safe to print."""
        return redact_secret_key(self.secret_key)


def redact_secret_key(secret_key: str) -> str:
    """Mask a secret key down to its environment prefix.

    A value that does not have the ``tr_<environment>_`` form is masked
    entirely.
    """
    match = _SECRET_KEY_PATTERN.fullmatch(secret_key)

    if match is None:
        return "****"

    return f"tr_{match.group(1)}_****"


def load_config(app: Flask) -> TriggerOutputsConfig:
    """Fill in the defaults in ``app.config``, validate every key and return
    the configuration in effect.

    ``TRIGGER_SECRET_KEY``, ``TRIGGER_API_URL`` and ``TRIGGER_PREVIEW_BRANCH``
    fall back to the environment variables of the same name when the app
    config does not set them. Numbers may be given as strings, as they are
    when read from the environment.

    :param app: the app being initialized.
    :raises ConfigurationError: a key is missing or invalid.
    """
    config = app.config

    for key in ENV_FALLBACK_KEYS:
        if config.get(key) is None:
            config[key] = os.environ.get(key)

    if config["TRIGGER_API_URL"] is None:
        config["TRIGGER_API_URL"] = DEFAULT_API_URL

    for key, default in DEFAULTS.items():
        config.setdefault(key, default)

    settings = TriggerOutputsConfig(
        secret_key=_read_secret_key(config.get("TRIGGER_SECRET_KEY")),
        api_url=_read_api_url(config["TRIGGER_API_URL"]),
        preview_branch=_read_preview_branch(config.get("TRIGGER_PREVIEW_BRANCH")),
        url_prefix=_read_url_prefix(config["TRIGGER_OUTPUTS_URL_PREFIX"]),
        task_content_extraction=_read_task_id(config, "TRIGGER_OUTPUTS_TASK_CONTENT_EXTRACTION"),
        task_content_analysis=_read_task_id(config, "TRIGGER_OUTPUTS_TASK_CONTENT_ANALYSIS"),
        task_crawl=_read_task_id(config, "TRIGGER_OUTPUTS_TASK_CRAWL"),
        task_site_audit=_read_task_id(config, "TRIGGER_OUTPUTS_TASK_SITE_AUDIT"),
        task_ai_strategy=_read_task_id(config, "TRIGGER_OUTPUTS_TASK_AI_STRATEGY"),
        task_audit=_read_task_id(config, "TRIGGER_OUTPUTS_TASK_AUDIT"),
        connect_timeout=_read_float(config, "TRIGGER_OUTPUTS_CONNECT_TIMEOUT", minimum=0.0),
        read_timeout=_read_float(config, "TRIGGER_OUTPUTS_READ_TIMEOUT", minimum=0.0),
        max_tries=_read_int(config, "TRIGGER_OUTPUTS_MAX_TRIES", minimum=1),
        max_retry_time=_read_float(config, "TRIGGER_OUTPUTS_MAX_RETRY_TIME", minimum=0.0),
        offload_threshold=_read_int(config, "TRIGGER_OUTPUTS_OFFLOAD_THRESHOLD", minimum=1),
        max_payload_size=_read_int(config, "TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE", minimum=1),
        max_output_size=_read_int(config, "TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE", minimum=1),
        cache_max_bytes=_read_int(config, "TRIGGER_OUTPUTS_CACHE_MAX_BYTES", minimum=0),
        cache_ttl=_read_float(config, "TRIGGER_OUTPUTS_CACHE_TTL", minimum=0.0),
        cache_max_entry_share=_read_share(config, "TRIGGER_OUTPUTS_CACHE_MAX_ENTRY_SHARE"),
        poll_coalesce=_read_float(
            config, "TRIGGER_OUTPUTS_POLL_COALESCE", minimum=0.0, allow_zero=True
        ),
        allow_redirect=_read_bool(config, "TRIGGER_OUTPUTS_ALLOW_REDIRECT"),
    )
    redis = load_redis_config(config, download_time=settings.download_time)

    return dataclasses.replace(settings, redis=redis)


def load_redis_config(app_config: MutableMapping[str, Any], *, download_time: float) -> RedisConfig:
    """Fill in the defaults of the shared tier's keys in ``app.config``,
    validate them and return them. They are validated even when no URL is
    set, so a mistake shows before the tier is turned on.

    ``TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT`` defaults to ``download_time``. A
    lock that expires before its holder's download ends lets another process
    download the same packet, so a shorter value set by the app logs a
    warning.

    :param app_config: the app's ``config``.
    :param download_time: longest time one download may take, in seconds.
    :raises ConfigurationError: a key has an invalid value. The message
        never contains the URL's password.
    """
    for key, default in REDIS_DEFAULTS.items():
        app_config.setdefault(key, default)
    app_config.setdefault("TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT", download_time)

    url = _read_redis_url(app_config["TRIGGER_OUTPUTS_REDIS_URL"])
    prefix = app_config["TRIGGER_OUTPUTS_REDIS_PREFIX"]
    if not isinstance(prefix, str):
        raise ConfigurationError(
            "TRIGGER_OUTPUTS_REDIS_PREFIX",
            f"TRIGGER_OUTPUTS_REDIS_PREFIX must be a string such as 'myapp:', got {prefix!r}.",
        )

    redis = RedisConfig(
        url=url,
        prefix=prefix,
        timeout=_read_float(app_config, "TRIGGER_OUTPUTS_REDIS_TIMEOUT", minimum=0.0),
        lock_timeout=_read_float(app_config, "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT", minimum=0.0),
        retry_after=_read_float(app_config, "TRIGGER_OUTPUTS_REDIS_RETRY_AFTER", minimum=0.0),
    )
    if redis.enabled and redis.lock_timeout < download_time:
        logger.warning(
            "TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT is %g s, shorter than the %g s one download"
            " may take (TRIGGER_OUTPUTS_MAX_RETRY_TIME plus the connect and read timeouts),"
            " so a slow output may be downloaded by several processes. Set it to %g or more.",
            redis.lock_timeout,
            download_time,
            download_time,
        )

    return redis


def _read_redis_url(value: object) -> str | None:
    key = "TRIGGER_OUTPUTS_REDIS_URL"

    if value is None or value == "":
        return None
    if not isinstance(value, str) or urlsplit(value).scheme not in _REDIS_SCHEMES:
        shown = repr(redact_redis_url(value)) if isinstance(value, str) else repr(value)
        raise ConfigurationError(
            key,
            f"{key} must be a redis://, rediss:// or unix:// URL such as"
            f" 'redis://localhost:6379/0', or None to turn the shared cache off,"
            f" got {shown}.",
        )

    return value


def redact_redis_url(url: str) -> str:
    """Return ``url`` with any user name and password replaced by ``***``,
    in the authority and in the ``username`` and ``password`` query
    parameters that redis-py also reads."""
    parts = urlsplit(url)
    redacted = url

    if parts.username is not None or parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        redacted = parts._replace(netloc=f"***@{host}").geturl()

    # The query is replaced in the text, because urlunsplit turns a URL with
    # an empty host, such as unix:///run/redis.sock, into unix:/run/redis.sock.
    base, question_mark, rest = redacted.partition("?")
    if question_mark:
        query, hash_mark, fragment = rest.partition("#")
        pairs = [
            (name, "***" if name in _REDIS_CREDENTIAL_PARAMETERS else value)
            for name, value in parse_qsl(query, keep_blank_values=True)
        ]
        redacted = f"{base}?{urlencode(pairs, safe='*/')}{hash_mark}{fragment}"

    return redacted


def _read_secret_key(value: object) -> str:
    key = "TRIGGER_SECRET_KEY"
    expected = (
        "a Trigger.dev secret key of the form tr_<environment>_..., such as tr_dev_..., "
        "tr_prod_..., tr_stg_... or tr_pr_..., from the API keys page of the dashboard"
    )

    if value is None or value == "":
        raise ConfigurationError(
            key,
            f"{key} is not set. Set it in the app config or the environment to {expected}.",
        )
    if not isinstance(value, str):
        raise ConfigurationError(
            key, f"{key} must be a string, got {type(value).__name__}. Set it to {expected}."
        )
    if value != value.strip():
        raise ConfigurationError(
            key,
            f"{key} has leading or trailing whitespace. Copy the key again without spaces "
            "or line breaks.",
        )

    match = _SECRET_KEY_PATTERN.fullmatch(value)

    if match is None:
        raise ConfigurationError(
            key, f"{key} is not a Trigger.dev secret key. Set it to {expected}."
        )

    environment = match.group(1)

    if environment == "pat":
        raise ConfigurationError(
            key,
            f"{key} is a personal access token (tr_pat_...), which spans every project of "
            f"a user. Set it to {expected}.",
        )
    if environment not in KNOWN_KEY_ENVIRONMENTS:
        logger.warning(
            "%s has the unknown environment prefix 'tr_%s_'; expected one of %s. "
            "Trigger.dev may reject the key.",
            key,
            environment,
            ", ".join(f"tr_{name}_" for name in KNOWN_KEY_ENVIRONMENTS),
        )

    return value


def _read_api_url(value: object) -> str:
    key = "TRIGGER_API_URL"
    expected = "an http or https URL with a host, such as https://api.trigger.dev"

    if not isinstance(value, str) or not value:
        raise ConfigurationError(key, f"{key} must be {expected}, got {value!r}.")

    parts = urlsplit(value)

    if parts.username is not None or parts.password is not None:
        # The value is not echoed because it contains credentials.
        raise ConfigurationError(
            key,
            f"{key} must not contain a user name or password; the secret key is sent in "
            "the Authorization header. Set it to " + expected + ".",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(key, f"{key} must be {expected}, got {value!r}.")
    try:
        parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
    except ValueError:
        raise ConfigurationError(
            key, f"{key} has an invalid port, got {value!r}. Set it to {expected}."
        ) from None
    if parts.query or parts.fragment:
        raise ConfigurationError(
            key, f"{key} must not have a query or fragment, got {value!r}. Set it to {expected}."
        )

    return value.rstrip("/")


def _read_preview_branch(value: object) -> str | None:
    key = "TRIGGER_PREVIEW_BRANCH"

    if value is None or value == "":
        return None
    if not isinstance(value, str) or value != value.strip() or not value.isprintable():
        raise ConfigurationError(
            key,
            f"{key} must be the name of a preview branch, without whitespace at either end "
            f"or control characters, got {value!r}.",
        )

    return value


def _read_url_prefix(value: object) -> str:
    key = "TRIGGER_OUTPUTS_URL_PREFIX"

    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ConfigurationError(
            key,
            f"{key} must be an empty string or a path starting with '/', such as "
            f"'/v1', got {value!r}.",
        )

    return value.rstrip("/")


def _read_task_id(config: Mapping[str, Any], key: str) -> str:
    value = config[key]

    if not isinstance(value, str) or not _TASK_ID_PATTERN.fullmatch(value):
        raise ConfigurationError(
            key,
            f"{key} must be a task identifier of 1 to 128 printable ASCII characters without "
            f"spaces, such as 'site-crawl', got {value!r}.",
        )

    return value


def _read_number(config: Mapping[str, Any], key: str, expected: str) -> float:
    value = config[key]

    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ConfigurationError(key, f"{key} must be {expected}, got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(key, f"{key} must be {expected}, got {value!r}.")
    if not math.isfinite(value):
        raise ConfigurationError(key, f"{key} must be {expected}, got {value!r}.")

    return float(value)


def _read_float(
    config: Mapping[str, Any], key: str, *, minimum: float, allow_zero: bool = False
) -> float:
    expected = "a number of seconds of 0 or more" if allow_zero else "a number of seconds above 0"
    number = _read_number(config, key, expected)

    if number < minimum or (number == minimum and not allow_zero):
        raise ConfigurationError(key, f"{key} must be {expected}, got {config[key]!r}.")

    return number


def _read_int(config: Mapping[str, Any], key: str, *, minimum: int) -> int:
    expected = f"a whole number of {minimum} or more"
    number = _read_number(config, key, expected)

    if number != int(number) or number < minimum:
        raise ConfigurationError(key, f"{key} must be {expected}, got {config[key]!r}.")

    return int(number)


def _read_bool(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]

    if not isinstance(value, bool):
        raise ConfigurationError(key, f"{key} must be True or False, got {value!r}.")

    return value


def _read_share(config: Mapping[str, Any], key: str) -> float:
    expected = "a fraction above 0 and at most 1, such as 0.25"
    number = _read_number(config, key, expected)

    if not 0.0 < number <= 1.0:
        raise ConfigurationError(key, f"{key} must be {expected}, got {config[key]!r}.")

    return number


def describe_config(config: TriggerOutputsConfig) -> list[tuple[str, object]]:
    """List every configuration key with the value in effect, for display.

    The secret key is redacted to its environment prefix, and the Redis URL
    has its user name and password replaced by ``***``.
    """
    rows: list[tuple[str, object]] = [
        ("TRIGGER_SECRET_KEY", config.redacted_secret_key),
        ("TRIGGER_API_URL", config.api_url),
        ("TRIGGER_PREVIEW_BRANCH", config.preview_branch),
    ]
    for key in DEFAULTS:
        rows.append((key, getattr(config, key.removeprefix("TRIGGER_OUTPUTS_").lower())))

    redis = config.redis
    rows += [
        ("TRIGGER_OUTPUTS_REDIS_URL", None if redis.url is None else redact_redis_url(redis.url)),
        ("TRIGGER_OUTPUTS_REDIS_PREFIX", redis.prefix),
        ("TRIGGER_OUTPUTS_REDIS_TIMEOUT", redis.timeout),
        ("TRIGGER_OUTPUTS_REDIS_LOCK_TIMEOUT", redis.lock_timeout),
        ("TRIGGER_OUTPUTS_REDIS_RETRY_AFTER", redis.retry_after),
    ]

    return rows
