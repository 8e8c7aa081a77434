"""Read Trigger.dev run outputs and payloads from Flask, inline or offloaded."""

from __future__ import annotations

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

__all__ = [
    "ApiError",
    "AuthenticationError",
    "InvalidRunIdError",
    "OutputTooLargeError",
    "OutputUnavailableError",
    "PacketDecodeError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RunFailedError",
    "RunNotFinishedError",
    "RunNotFoundError",
    "StorageError",
    "TriggerOutputsError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]
