"""An example Flask app that uses flask-trigger-outputs.

Run it with ``python -m example_app`` (or ``make demo``). Without
``TRIGGER_SECRET_KEY`` it runs in local mode: the Trigger.dev emulator and
the six tasks run inside the process and read a bundled sample website.
With the key set it talks to Trigger.dev, where tasks with the same
identifiers must be deployed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_trigger_outputs import TriggerOutputs

from .local_mode import LocalServices, install_payload_check, start_local_services
from .views import blueprint

logger = logging.getLogger(__name__)

#: Key of the local services in ``app.extensions`` when the app runs in local mode.
LOCAL_SERVICES_KEY = "example_app"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the example app.

    :param test_config: configuration that overrides the defaults and the
        environment. When neither it nor the environment sets
        ``TRIGGER_SECRET_KEY``, the app starts in local mode; call
        :func:`close_local_services` to stop the servers it started.
    """
    app = Flask(__name__)
    if test_config is not None:
        app.config.update(test_config)

    local: LocalServices | None = None
    if not (app.config.get("TRIGGER_SECRET_KEY") or os.environ.get("TRIGGER_SECRET_KEY")):
        local = start_local_services()
        app.config["TRIGGER_API_URL"] = local.emulator.url
        app.config["TRIGGER_SECRET_KEY"] = local.emulator.secret_key
        app.extensions[LOCAL_SERVICES_KEY] = local
        logger.info(
            "Local mode: TRIGGER_SECRET_KEY is not set, so the six tasks run in the built-in"
            " Trigger.dev emulator at %s and read the sample site at %s.",
            local.emulator.url,
            local.site.url,
        )

    # The two lines the README shows: create the extension with the app.
    trigger_outputs = TriggerOutputs(app)

    if local is not None:
        install_payload_check(app, local.scope, trigger_outputs.blueprint.name)
    app.register_blueprint(blueprint)
    return app


def close_local_services(app: Flask) -> None:
    """Stop the emulator and the sample site that local mode started, if any."""
    local = app.extensions.pop(LOCAL_SERVICES_KEY, None)
    if isinstance(local, LocalServices):
        local.close()
