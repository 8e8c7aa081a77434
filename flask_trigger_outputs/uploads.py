"""Uploads of payloads too large to send inline to presigned object-storage
URLs."""

from __future__ import annotations

import requests

from ._retry import RetryPolicy, TransientError, call_with_retry
from .errors import StorageError
from .storage import (
    URL_CHARACTERS,
    create_storage_session,
    give_up_error,
    send_verbatim,
    url_host,
    url_origin,
)


class PacketUploader:
    """Upload packets to presigned PUT URLs, with retries.

    Used by :meth:`~flask_trigger_outputs.client.TriggerClient.trigger` for
    payloads too large to send inline. Like :class:`PacketDownloader`, it
    uses a session without credentials or cookies and sends the URL exactly
    as received. Retries cover 5xx, 408 and 429 responses, connection errors
    and timeouts; a PUT of the same bytes to the same URL is idempotent.

    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for the storage host's response.
    :param retry_policy: limits and clocks of the retries.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_policy = retry_policy or RetryPolicy(
            max_tries=4, max_time=30.0, initial_wait=0.5, factor=2.0, max_wait=5.0
        )
        self._session = create_storage_session()

    def close(self) -> None:
        """Close the pooled connections to the storage host."""
        self._session.close()

    def upload(self, url: str, data: bytes, content_type: str, *, task_id: str) -> None:
        """PUT ``data`` to a presigned URL with ``content_type`` as its
        ``Content-Type``.

        :param task_id: the task whose payload is uploaded, for messages.
        :raises UpstreamTimeoutError: the storage host kept timing out.
        :raises StorageError: the storage host rejected the upload, or kept
            failing until the retries ran out.
        """
        host = url_host(url)
        subject = f"the payload of task {task_id!r}"
        if URL_CHARACTERS.fullmatch(url) is None or url_origin(url)[0] not in ("http", "https"):
            raise StorageError(
                f"Trigger.dev returned an invalid upload URL for {subject}: expected an"
                " http or https URL of printable ASCII characters.",
                task_id=task_id,
                retryable=False,
            )

        def attempt() -> None:
            request = requests.Request(
                "PUT", url, data=data, headers={"Content-Type": content_type}
            )
            try:
                response = send_verbatim(
                    self._session,
                    request,
                    timeout=(self.connect_timeout, self.read_timeout),
                    stream=False,
                )
            except requests.RequestException as exc:
                # The text of the requests exception may contain the URL with
                # its signature, so only its class name is kept.
                raise StorageError(
                    f"Could not upload {subject} to {host} ({type(exc).__name__}).",
                    task_id=task_id,
                    retryable=False,
                ) from None

            status = response.status_code
            response.close()
            if 200 <= status < 300:
                return
            if status in (408, 429) or status >= 500:
                raise TransientError(f"HTTP {status}", status_code=status)
            raise StorageError(
                f"The storage host {host} rejected the upload of {subject} with HTTP"
                f" {status}. The upload URL may have expired; trigger the task again.",
                task_id=task_id,
                retryable=False,
                status_code=status,
            )

        try:
            call_with_retry(
                attempt,
                policy=self.retry_policy,
                operation=f"Uploading {subject} to {host}",
                task_id=task_id,
            )
        except TransientError as failure:
            error = give_up_error(
                failure,
                verb="upload",
                subject=subject,
                host=host,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                task_id=task_id,
            )
        else:
            return
        # Raised outside the except block with no cause or context, as in
        # :class:`PacketDownloader`.
        raise error
