"""Read Trigger.dev run outputs and payloads from Flask, inline or offloaded."""

from __future__ import annotations

from .client import TriggerClient
from .config import ConfigurationError, TriggerOutputsConfig
from .errors import (
    ApiError,
    AuthenticationError,
    InvalidRunIdError,
    OutputTooLargeError,
    OutputUnavailableError,
    PacketDecodeError,
    PayloadTooLargeError,
    RateLimitError,
    RunFailedError,
    RunNotFinishedError,
    RunNotFoundError,
    StorageError,
    TriggerOutputsError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from .extension import TriggerOutputs, TriggerOutputsState
from .helpers import get_run_output, get_run_payload, get_run_result
from .packets import PacketDownloader
from .reader import RunReader, RunResult
from .runs import Run

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ConfigurationError",
    "InvalidRunIdError",
    "OutputTooLargeError",
    "OutputUnavailableError",
    "PacketDecodeError",
    "PacketDownloader",
    "PayloadTooLargeError",
    "RateLimitError",
    "Run",
    "RunFailedError",
    "RunNotFinishedError",
    "RunNotFoundError",
    "RunReader",
    "RunResult",
    "StorageError",
    "TriggerClient",
    "TriggerOutputs",
    "TriggerOutputsConfig",
    "TriggerOutputsError",
    "TriggerOutputsState",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "get_run_output",
    "get_run_payload",
    "get_run_result",
]
