"""The translation of Trigger.dev API responses into the package's
exceptions: which responses to retry and when, the error for a final
non-2xx status, and the error once the retries run out.

Messages name the run or task, the status and what to do next, and quote
at most a shortened ``error`` field of the server's body.
"""

from __future__ import annotations

import math

import requests

from ._retry import TransientError
from .errors import (
    ApiError,
    AuthenticationError,
    RateLimitError,
    RunNotFoundError,
    TriggerOutputsError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

# Maximum length of the part of a server error message quoted in an exception.
SERVER_MESSAGE_LENGTH = 200

# Statuses retried when the server sends no ``x-should-retry`` header.
RETRY_STATUSES = frozenset({408, 409, 429})


def should_retry(response: requests.Response) -> bool:
    """Decide whether a response is worth another attempt, honouring the
    server's ``x-should-retry`` header first."""
    header = response.headers.get("x-should-retry", "").strip().lower()
    if header == "true":
        return True
    if header == "false":
        return False
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def read_retry_at(response: requests.Response, now: float) -> float | None:
    """Return the Unix time before which the server asked not to retry:
    ``x-ratelimit-reset`` (milliseconds since the epoch) on a 429, or a
    numeric ``Retry-After`` (seconds from now)."""
    if response.status_code == 429:
        reset = response.headers.get("x-ratelimit-reset", "").strip()
        if reset.isdigit():
            return int(reset) / 1000.0

    retry_after = response.headers.get("Retry-After", "").strip()
    if retry_after.isdigit():
        return now + int(retry_after)
    return None


def read_server_message(response: requests.Response) -> str | None:
    """Return the ``error`` field of a JSON error body, quoted and shortened."""
    try:
        body = response.json()
    except ValueError:
        return None

    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        return None
    if len(message) > SERVER_MESSAGE_LENGTH:
        return repr(message[:SERVER_MESSAGE_LENGTH]) + "..."
    return repr(message)


def status_error(
    response: requests.Response,
    action: str,
    run_id: str | None,
    task_id: str | None,
    is_run_lookup: bool,
) -> TriggerOutputsError:
    """Build the error for a final response with a non-2xx status."""
    status = response.status_code
    server_message = read_server_message(response)

    if status in (401, 403):
        return AuthenticationError(
            f"Trigger.dev rejected the secret key (HTTP {status}) while {action}."
            " Check that TRIGGER_SECRET_KEY is a secret API key of the project"
            " environment you mean to use.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )
    if status == 404 and is_run_lookup:
        return RunNotFoundError(
            f"Trigger.dev has no run {run_id!r} in the environment of this secret key."
            " Check the run id and that the key belongs to the environment that"
            " started the run.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )

    detail = f": {server_message}" if server_message else ""
    if status >= 500:
        # Only reached when the server sent ``x-should-retry: false``.
        return UpstreamUnavailableError(
            f"Trigger.dev failed with HTTP {status} while {action} and asked not to"
            f" retry{detail}. Try again later.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )
    return ApiError(
        f"Trigger.dev rejected the request with HTTP {status} while {action}{detail}.",
        status_code=status,
        run_id=run_id,
        task_id=task_id,
    )


def give_up_error(
    failure: TransientError,
    action: str,
    run_id: str | None,
    task_id: str | None,
    host: str,
) -> TriggerOutputsError:
    """Build the error raised once the retries of a call are exhausted."""
    tries = (
        f"{failure.attempts} attempt{'s' if failure.attempts != 1 else ''}"
        f" in {failure.elapsed:.1f} s"
    )
    status = failure.status_code

    if status == 429 and failure.retry_at_beyond_budget is not None:
        reset_in = math.ceil(failure.retry_at_beyond_budget)
        return RateLimitError(
            f"Trigger.dev rate-limited the API calls (HTTP 429) while {action}, and the"
            f" limit resets in {reset_in} s, after the retry time budget ends, so the call"
            f" gave up after {tries}. Try again after the reset or lower the request rate.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )
    if status == 429:
        return RateLimitError(
            f"Trigger.dev kept rate-limiting the API calls (HTTP 429) while {action},"
            f" after {tries}. Try again later or lower the request rate.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )
    if status == 408 or (failure.cause is not None and isinstance(failure.cause, requests.Timeout)):
        return UpstreamTimeoutError(
            f"Trigger.dev did not respond in time while {action}, after {tries}. Try again later.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )
    if status is not None and status >= 500:
        return UpstreamUnavailableError(
            f"Trigger.dev kept failing (HTTP {status}) while {action}, after {tries}."
            " Try again later.",
            status_code=status,
            run_id=run_id,
            task_id=task_id,
        )
    if status is None:
        return UpstreamUnavailableError(
            f"Could not reach Trigger.dev at {host} while {action}"
            f" ({failure.reason}), after {tries}. Check TRIGGER_API_URL and the"
            " network connection.",
            run_id=run_id,
            task_id=task_id,
        )
    return ApiError(
        f"Trigger.dev kept responding with HTTP {status} while {action}, after {tries}.",
        status_code=status,
        run_id=run_id,
        task_id=task_id,
    )
