"""Shared fixtures for the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from extension_tasks import register_tasks

from flask_trigger_outputs.emulator import EmulatorServer

if TYPE_CHECKING:
    import redis
    from redis_server import RedisServer


def _find_vectors_dir() -> Path:
    """Locate the packets written by the official Trigger.dev serializer.

    They are kept outside the repository, in ``shared/vectors`` beside the
    checkout; ``TRIGGER_VECTORS_DIR`` overrides the location.
    """
    if "TRIGGER_VECTORS_DIR" in os.environ:
        return Path(os.environ["TRIGGER_VECTORS_DIR"])
    for base in (Path(__file__).resolve().parents[2], Path("/work")):
        candidate = base / "shared" / "vectors"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "vectors"


VECTORS_DIR = _find_vectors_dir()


def require_component(name: str, *candidates: str) -> str:
    """Return the path of a system executable, or skip the test without it.

    Under CI (the ``CI`` environment variable is set) a missing component is
    a failure instead, so a suite that silently skipped everything cannot pass.
    """
    for candidate in (name, *candidates):
        path = shutil.which(candidate)
        if path:
            return path
    reason = f"{name!r} is not installed; install it to run this test (CI installs it in .ci/run)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; a missing component is a failure under CI", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_executable() -> str:
    return require_component("node")


@pytest.fixture(scope="session")
def redis_server_executable() -> str:
    return require_component("redis-server")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    return require_component("chromium", "chromium-browser")


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    if not VECTORS_DIR.is_dir():
        reason = f"packet vectors not found at {VECTORS_DIR}; set TRIGGER_VECTORS_DIR"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return VECTORS_DIR


@pytest.fixture
def server(trigger_emulator: EmulatorServer) -> EmulatorServer:
    """The running emulator with the tasks of ``extension_tasks`` registered.

    Test modules that need an emulator configured otherwise define their
    own ``server`` fixture, which takes precedence over this one.
    """
    register_tasks(trigger_emulator)
    return trigger_emulator


@pytest.fixture(scope="module")
def redis_server(redis_server_executable: str) -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` on 127.0.0.1, shared by the tests of one
    module."""
    # Imported here so that only the tests that use Redis need the redis
    # package.
    from redis_server import RedisServer

    with RedisServer(redis_server_executable) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of :func:`redis_server`, whose data and statistics are
    cleared before the test."""
    client = redis_server.client()
    client.flushall()
    client.config_resetstat()
    yield client
    client.close()
