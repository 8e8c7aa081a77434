"""The Flask extension object and the per-app state it creates."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import Blueprint, Flask, current_app

from .cache import OutputCache
from .client import TriggerClient
from .config import TriggerOutputsConfig, load_config
from .packets import PacketDownloader
from .reader import RunReader
from .routes import create_blueprint
from .runs import Run
from .shared_tier import create_output_cache

logger = logging.getLogger(__name__)

#: Key of the per-app state in ``app.extensions``.
EXTENSION_KEY = "trigger_outputs"

#: ``authorize(route_name, run)``: return true to let the request see the run.
AuthorizeCallback = Callable[[str, Run], bool]
#: ``run_tags()``: tags that runs started by the current request carry, and
#: that a run must carry for the current request to read it.
RunTagsCallback = Callable[[], Iterable[str]]


@dataclass
class TriggerOutputsState:
    """Everything one app uses to talk to Trigger.dev, stored in
    ``app.extensions["trigger_outputs"]``.

    Each app that calls :meth:`TriggerOutputs.init_app` gets its own state,
    so apps in one process can use different keys, hosts and caches.
    """

    #: The validated configuration, read once at ``init_app``.
    config: TriggerOutputsConfig
    #: The Trigger.dev API client, which sends the secret key to the API host.
    client: TriggerClient
    #: The credential-free downloader of presigned URLs.
    downloader: PacketDownloader
    #: The cache of finished runs and their packets, with the counters of
    #: cache and download activity. It stores nothing when
    #: ``TRIGGER_OUTPUTS_CACHE_MAX_BYTES`` is 0.
    cache: OutputCache
    #: Reads runs, outputs and payloads through the client, downloader and cache.
    reader: RunReader
    #: The extension object that registered this state.
    extension: TriggerOutputs

    def close(self) -> None:
        """Close the pooled connections of the API client, its uploader, the
        downloader and, when the cache has one, the shared Redis tier.

        Call it when the app is discarded, for example at the end of a test
        or of a worker process. A request sent after ``close`` opens new
        connections, so closing too early costs only the reconnects.
        """
        self.client.close()
        self.downloader.close()
        shared = getattr(self.cache, "shared", None)
        if shared is not None:
            shared.close()


class TriggerOutputs:
    """Read Trigger.dev run outputs and payloads from a Flask app, and serve
    the six JSON routes that start and poll runs.

    Create it with an app, or without one and call :meth:`init_app` later,
    once per app. All state lives in ``app.extensions["trigger_outputs"]``,
    so one extension object can serve several apps with different
    configurations.

    :param app: the app to initialize now, or ``None``.
    :param register_blueprint: register :attr:`blueprint` at ``init_app``
        under ``TRIGGER_OUTPUTS_URL_PREFIX``. Pass ``False`` to register it
        yourself, for example with your own ``url_prefix`` or hooks.
    :param authorize: called as ``authorize(route_name, run)`` before a
        route returns any data of a run. A false result gives a 404 response,
        exactly as for an unknown run.
    :param run_tags: called with no arguments during a request. The tags it
        returns are added to every run the request starts, and a run must
        carry all of them for the request to read it. Otherwise the route
        responds 404.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        register_blueprint: bool = True,
        authorize: AuthorizeCallback | None = None,
        run_tags: RunTagsCallback | None = None,
    ) -> None:
        self.register_blueprint = register_blueprint
        self.authorize = authorize
        self.run_tags = run_tags

        #: The blueprint with the six routes, complete before it is
        #: registered. Its endpoints are ``trigger_outputs.crawl`` and so on.
        self.blueprint: Blueprint = create_blueprint(self)

        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the configuration, create the clients and register the
        blueprint and the ``flask trigger-outputs`` commands on ``app``.

        :param app: the app to initialize.
        :raises RuntimeError: if ``app`` already has a ``TriggerOutputs``.
        :raises ConfigurationError: if a configuration key is missing or
            invalid. The message names the key.
        """
        from .cli import trigger_outputs_cli  # cli.py imports this module

        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"A 'TriggerOutputs' instance is already registered on app {app.name!r}."
                " Call init_app only once per app, or use the existing instance"
                " from app.extensions['trigger_outputs'].extension."
            )

        config = load_config(app)
        state = create_state(config, self, cache=create_output_cache(config))
        app.extensions[EXTENSION_KEY] = state

        if self.register_blueprint:
            app.register_blueprint(self.blueprint, url_prefix=config.url_prefix or None)

        app.cli.add_command(trigger_outputs_cli)

        logger.debug(
            "Initialized flask-trigger-outputs on app %r for %s (%s environment).",
            app.name,
            config.api_url,
            config.environment,
        )


def create_state(
    config: TriggerOutputsConfig, extension: TriggerOutputs, *, cache: OutputCache
) -> TriggerOutputsState:
    """Create the clients and reader for one app from its configuration."""
    client = TriggerClient(
        config.secret_key,
        api_url=config.api_url,
        branch=config.preview_branch,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_tries=config.max_tries,
        max_time=config.max_retry_time,
        offload_threshold=config.offload_threshold,
        max_payload_size=config.max_payload_size,
    )
    downloader = PacketDownloader(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_size=config.max_output_size,
        max_tries=config.max_tries,
        max_time=config.max_retry_time,
    )

    count_retries(cache, client, downloader)
    reader = RunReader(client, downloader, cache=cache)

    return TriggerOutputsState(
        config=config,
        client=client,
        downloader=downloader,
        cache=cache,
        reader=reader,
        extension=extension,
    )


def count_retries(cache: OutputCache, client: TriggerClient, downloader: PacketDownloader) -> None:
    """Make every retry of the API client, its uploader and the downloader
    count in ``cache.stats``. Call it before the clients send requests."""
    record = cache.stats.record_retry
    client.retry_policy = dataclasses.replace(client.retry_policy, on_retry=record)
    client.uploader.retry_policy = dataclasses.replace(
        client.uploader.retry_policy, on_retry=record
    )
    downloader.retry_policy = dataclasses.replace(downloader.retry_policy, on_retry=record)


def get_state(app: Flask | None = None) -> TriggerOutputsState:
    """Return the state of ``app``, or of the current app by default.

    :raises RuntimeError: if the app has no ``TriggerOutputs``.
    """
    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]

    state = app.extensions.get(EXTENSION_KEY)

    if not isinstance(state, TriggerOutputsState):
        raise RuntimeError(
            f"flask-trigger-outputs is not initialized on app {app.name!r}."
            " Was TriggerOutputs(app) or init_app(app) called?"
        )

    return state
