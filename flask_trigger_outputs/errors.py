"""Exceptions raised by flask-trigger-outputs.

Every exception derives from :class:`TriggerOutputsError`. Each class carries
the HTTP status and the stable error ``code`` of the blueprint's JSON error
response, so a view that catches one can respond the same way. Messages name the run or
task involved and never contain the secret key or a presigned URL's query.
"""

from __future__ import annotations


class TriggerOutputsError(Exception):
    """Base class of every error raised by this package.

    :param message: a full sentence saying what failed and what to do.
    :param run_id: the run involved, when there is one.
    :param task_id: the task involved, when there is one.
    :param status_code: the HTTP status of Trigger.dev's or the storage
        host's response, when the failure came from a response.
    :param retryable: overrides the class's :attr:`retryable` for this
        error, for a class whose failures may be permanent or not.
    """

    #: Stable machine-readable code used in JSON error bodies.
    code = "trigger_outputs_error"
    #: HTTP status of the blueprint's response to this error.
    http_status = 502
    #: Whether repeating the same call later may succeed. An instance may
    #: override its class's value.
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        task_id: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.task_id = task_id
        self.status_code = status_code
        if retryable is not None:
            self.retryable = retryable


class InvalidRunIdError(TriggerOutputsError, ValueError):
    """A run id is not of the form ``run_`` followed by lowercase letters and
    digits. Raised before any request is sent."""

    code = "invalid_run_id"
    http_status = 400


class PayloadTooLargeError(TriggerOutputsError, ValueError):
    """A trigger payload is larger than Trigger.dev accepts (3 MB). Raised
    before anything is uploaded."""

    code = "payload_too_large"
    http_status = 413

    def __init__(self, message: str, *, size: int, limit: int, task_id: str | None = None) -> None:
        super().__init__(message, task_id=task_id)
        self.size = size
        self.limit = limit


class RunNotFoundError(TriggerOutputsError):
    """Trigger.dev has no run with this id in the environment of the key."""

    code = "run_not_found"
    http_status = 404


class AuthenticationError(TriggerOutputsError):
    """Trigger.dev rejected the secret key (401 or 403). Not retried."""

    code = "upstream_authentication_failed"
    http_status = 502


class RateLimitError(TriggerOutputsError):
    """Trigger.dev kept responding 429 until the retry budget ran out."""

    code = "rate_limited"
    http_status = 502
    retryable = True


class UpstreamUnavailableError(TriggerOutputsError):
    """Trigger.dev could not be reached or kept failing (5xx, connection
    errors) until the retry budget ran out."""

    code = "upstream_unavailable"
    http_status = 502
    retryable = True


class UpstreamTimeoutError(TriggerOutputsError):
    """Trigger.dev or the storage host did not respond within the timeout."""

    code = "upstream_timeout"
    http_status = 504
    retryable = True


class ApiError(TriggerOutputsError):
    """Trigger.dev rejected a request with a status this package does not
    handle specially (400, 409 after retries, 422, ...)."""

    code = "upstream_error"
    http_status = 502


class StorageError(TriggerOutputsError):
    """The presigned download failed: the storage host responded with an error
    (including an S3-style XML error body), the body was cut short, or a
    fresh URL was also rejected.

    ``retryable`` is true for failures that may pass (5xx after retries,
    connection errors, a body cut short) and false for permanent ones (a
    missing object, an invalid URL, a redirect to another host)."""

    code = "storage_error"
    http_status = 502
    retryable = True


class OutputTooLargeError(TriggerOutputsError):
    """A stored packet is larger than the configured maximum size. The
    download is aborted as soon as the limit is passed."""

    code = "output_too_large"
    http_status = 502

    def __init__(self, message: str, *, limit: int, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.limit = limit


class PacketDecodeError(TriggerOutputsError, ValueError):
    """A packet's body does not match its data type: invalid JSON, invalid
    superjson, or bytes that are not UTF-8."""

    code = "invalid_packet"
    http_status = 502


class OutputUnavailableError(TriggerOutputsError):
    """A finished run reports neither inline data nor a presigned URL, which
    happens when Trigger.dev failed to sign the URL. Retrying later may work."""

    code = "output_unavailable"
    http_status = 502
    retryable = True


class RunNotFinishedError(TriggerOutputsError):
    """The output was requested while the run is still queued, executing or
    waiting."""

    code = "run_not_finished"
    http_status = 409
    retryable = True

    def __init__(self, message: str, *, status: str, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.status = status


class RunFailedError(TriggerOutputsError):
    """The output was requested for a run that finished without success
    (failed, crashed, canceled, expired, timed out)."""

    code = "run_failed"
    http_status = 409

    def __init__(
        self,
        message: str,
        *,
        status: str,
        error_name: str | None = None,
        error_message: str | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id)
        self.status = status
        self.error_name = error_name
        self.error_message = error_message
