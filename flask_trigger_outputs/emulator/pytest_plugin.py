"""pytest fixtures that run the Trigger.dev emulator on 127.0.0.1.

The plugin is registered through the ``pytest11`` entry point, so installing
the package makes these fixtures available to every test suite:

``trigger_emulator``
    A running :class:`~flask_trigger_outputs.emulator.EmulatorServer` with
    ``.url``, ``.secret_key`` and ``.emulator``, stopped after the test.
    Mark a test with ``@pytest.mark.trigger_emulator(offload_threshold=64)``
    to pass keyword arguments to :class:`~flask_trigger_outputs.emulator.Emulator`.

``trigger_app``
    A Flask app with ``TriggerOutputs`` configured against that emulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .app import Emulator
from .server import EmulatorServer

if TYPE_CHECKING:
    from flask import Flask


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "trigger_emulator(**options): keyword arguments for the Emulator "
        "behind the trigger_emulator fixture",
    )


@pytest.fixture
def trigger_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    """Yield a Trigger.dev emulator served on 127.0.0.1 on a free port."""
    marker = request.node.get_closest_marker("trigger_emulator")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    server = EmulatorServer(Emulator(**options)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def trigger_app(trigger_emulator: EmulatorServer) -> Flask:
    """Return a Flask app whose ``TriggerOutputs`` talks to ``trigger_emulator``."""
    # Imported here so the emulator fixtures work without the extension's
    # dependencies being importable at plugin load time.
    from flask import Flask

    from flask_trigger_outputs.extension import TriggerOutputs

    app = Flask("trigger_app")
    app.config.update(
        TESTING=True,
        TRIGGER_API_URL=trigger_emulator.url,
        TRIGGER_SECRET_KEY=trigger_emulator.secret_key,
    )
    TriggerOutputs(app)
    return app
