"""Downloads of offloaded packets from presigned object-storage URLs.

The downloads use the credential-free session of
:mod:`flask_trigger_outputs.storage` and send each URL exactly as received.
Messages and logs name the storage host, never the URL with its query.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import requests
import urllib3

from ._retry import RetryPolicy, TransientError, call_with_retry
from .errors import OutputTooLargeError, StorageError, UpstreamTimeoutError
from .storage import (
    URL_CHARACTERS,
    create_storage_session,
    give_up_error,
    send_verbatim,
    url_host,
    url_origin,
)

# Re-exported because callers import them from this module.
from .storage import redact_url as redact_url
from .uploads import PacketUploader as PacketUploader

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Default maximum size of a downloaded packet: Trigger.dev's limit on a
#: task output, 10 MB.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024

# Same-origin redirects followed before giving up.
_MAX_REDIRECTS = 3

# Maximum number of bytes of an error body read to find an S3 error code.
_ERROR_BODY_LIMIT = 4096

_S3_ERROR_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")


class ExpiredUrlError(StorageError):
    """The storage host rejected a presigned URL with 403, usually because
    it expired. Retrying the same URL cannot help: retrieve the run again
    for a fresh one. It keeps the ``storage_error`` code of its base class,
    so a route that lets it through responds as to any storage failure."""

    retryable = False


@dataclass(frozen=True)
class Packet:
    """A downloaded packet: the body and the ``Content-Type`` it came with
    (``None`` when the storage host sent none)."""

    data: bytes
    content_type: str | None

    @property
    def size(self) -> int:
        """Size of the body in bytes."""
        return len(self.data)


class PacketStream(NamedTuple):
    """An opened download, returned by :meth:`PacketDownloader.stream`."""

    #: The packet's data type as the storage host sent it, or ``None``.
    content_type: str | None
    #: The body's length from ``Content-Length``, or ``None`` when the
    #: storage host did not announce one.
    content_length: int | None
    #: The body, in pieces of at most the requested chunk size.
    chunks: Iterator[bytes]


class PacketDownloader:
    """Download packets from presigned URLs, with retries and a size cap.

    Retries cover 5xx, 408 and 429 responses, connection errors, timeouts and
    bodies shorter than their ``Content-Length``. A 403 raises
    :class:`ExpiredUrlError` at once. Other 4xx responses raise
    :class:`~flask_trigger_outputs.errors.StorageError` without a retry.

    Redirects are followed only within the same scheme, host and port, at
    most three times. A redirect elsewhere is refused, since a presigned
    URL is signed for one host.

    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for each piece of the body. It
        bounds the gaps between bytes, not the whole download: ``max_time``
        bounds the duration and the size cap the length of the whole.
    :param max_size: the largest body accepted, in bytes. A larger body is
        aborted as soon as the limit is passed.
    :param max_tries: attempts per download, the first included.
    :param max_time: time budget in seconds for the attempts of one download.
    :param retry_policy: overrides ``max_tries`` and ``max_time`` with a
        complete policy, for example one whose clock and sleep are driven by
        a test.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_size: int = DEFAULT_MAX_SIZE,
        max_tries: int = 4,
        max_time: float = 30.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if max_size <= 0:
            raise ValueError(f"max_size must be a positive number of bytes, got {max_size!r}.")

        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_size = max_size
        self.retry_policy = retry_policy or RetryPolicy(
            max_tries=max_tries, max_time=max_time, initial_wait=0.5, factor=2.0, max_wait=5.0
        )
        self._session = create_storage_session()

    def close(self) -> None:
        """Close the pooled connections to the storage host."""
        self._session.close()

    def download(self, url: str, *, run_id: str | None = None) -> Packet:
        """Download the whole packet behind a presigned URL.

        :param url: the presigned URL, used exactly as given.
        :param run_id: the run the packet belongs to, for messages and logs.
        :raises ExpiredUrlError: the storage host responded with 403.
        :raises OutputTooLargeError: the body is larger than ``max_size``.
        :raises UpstreamTimeoutError: the storage host kept timing out, or
            the download took longer than the retry policy's ``max_time``.
        :raises StorageError: any other failure, after retries where they
            make sense.
        """
        self._check_url(url, run_id)
        deadline = self.retry_policy.clock() + self.retry_policy.max_time

        def attempt() -> Packet:
            response = self._open(url, run_id)
            self._check_announced_size(response, run_id)
            try:
                chunks = self._read_body(
                    response, url, run_id, retry_truncated=True, deadline=deadline
                )
                data = b"".join(chunks)
            finally:
                response.close()
            return Packet(data=data, content_type=response.headers.get("Content-Type"))

        return self._with_retry(attempt, url, run_id)

    def stream(
        self, url: str, *, run_id: str | None = None, chunk_size: int = 64 * 1024
    ) -> PacketStream:
        """Open the packet behind a presigned URL and return its
        ``Content-Type``, its announced length and an iterator over the body.

        Opening the connection and reading the status are retried like
        :meth:`download`. Once the first chunk is out, a failure cannot be
        retried: the iterator raises
        :class:`~flask_trigger_outputs.errors.StorageError` when the body is
        cut short, :class:`~flask_trigger_outputs.errors.OutputTooLargeError`
        when it passes ``max_size`` and
        :class:`~flask_trigger_outputs.errors.UpstreamTimeoutError` when the
        time spent opening the download and waiting for its chunks passes
        the retry policy's ``max_time``. Time the caller spends between
        chunks does not count. Close the iterator (or exhaust it) to release
        the connection.

        :raises ExpiredUrlError: the storage host responded with 403.
        :raises OutputTooLargeError: the announced ``Content-Length`` is
            larger than ``max_size``.
        :raises StorageError: the download could not be opened.
        """
        self._check_url(url, run_id)
        deadline = self.retry_policy.clock() + self.retry_policy.max_time
        response = self._with_retry(lambda: self._open(url, run_id), url, run_id)
        self._check_announced_size(response, run_id)

        def chunks() -> Iterator[bytes]:
            try:
                yield from self._read_body(
                    response,
                    url,
                    run_id,
                    retry_truncated=False,
                    deadline=deadline,
                    chunk_size=chunk_size,
                )
            finally:
                response.close()

        return PacketStream(
            response.headers.get("Content-Type"), _decoded_length(response), chunks()
        )

    def _with_retry(self, attempt: Callable[[], T], url: str, run_id: str | None) -> T:
        host = url_host(url)
        try:
            return call_with_retry(
                attempt,
                policy=self.retry_policy,
                operation=f"Downloading {_subject(run_id)} from {host}",
                run_id=run_id,
            )
        except TransientError as failure:
            error = give_up_error(
                failure,
                verb="download",
                subject=_subject(run_id),
                host=host,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                run_id=run_id,
            )
        # Raised outside the except block with no cause or context: the text of
        # a requests exception contains the URL with its signature.
        raise error

    def _open(self, url: str, run_id: str | None) -> requests.Response:
        """Send the GET request and return a response with a 2xx status whose
        body is not read yet, following same-origin redirects."""
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._send(current, run_id)

            if response.is_redirect:
                target = urllib.parse.urljoin(current, response.headers["Location"])
                response.close()
                if url_origin(target) != url_origin(current):
                    raise StorageError(
                        f"The storage host {url_host(current)} redirected the download of"
                        f" {_subject(run_id)} to another host ({url_host(target)}); a presigned"
                        " URL is only valid for its own host, so the redirect was not followed.",
                        run_id=run_id,
                        retryable=False,
                    )
                self._check_url(target, run_id)
                current = target
                continue

            if response.ok:
                return response

            raise self._status_error(response, current, run_id)

        raise StorageError(
            f"The storage host {url_host(url)} redirected the download of {_subject(run_id)}"
            f" more than {_MAX_REDIRECTS} times.",
            run_id=run_id,
            retryable=False,
        )

    def _send(self, url: str, run_id: str | None) -> requests.Response:
        try:
            return send_verbatim(
                self._session,
                requests.Request("GET", url),
                timeout=(self.connect_timeout, self.read_timeout),
                stream=True,
            )
        except requests.RequestException as exc:
            reason = type(exc).__name__
        # The text of the requests exception may contain the URL with its
        # signature, so only its class name is kept.
        raise StorageError(
            f"Could not request {_subject(run_id)} from {url_host(url)} ({reason}).",
            run_id=run_id,
            retryable=False,
        )

    def _status_error(self, response: requests.Response, url: str, run_id: str | None) -> Exception:
        """Turn an error status into the exception to raise: transient for
        408, 429 and 5xx, :class:`ExpiredUrlError` for 403, else final."""
        status = response.status_code
        error_code = _read_error_code(response)
        response.close()
        detail = f"HTTP {status}, {error_code}" if error_code else f"HTTP {status}"

        if status == 403:
            return ExpiredUrlError(
                f"The storage host {url_host(url)} rejected the presigned URL for"
                f" {_subject(run_id)} ({detail}); it has probably expired."
                " Retrieve the run again for a fresh URL.",
                run_id=run_id,
                status_code=status,
            )
        if status in (408, 429) or status >= 500:
            return TransientError(detail, status_code=status)

        return StorageError(
            f"The storage host {url_host(url)} responded with {detail} for {_subject(run_id)}."
            " The stored packet may have been deleted.",
            run_id=run_id,
            retryable=False,
            status_code=status,
        )

    def _check_announced_size(self, response: requests.Response, run_id: str | None) -> None:
        """Close ``response`` and raise :class:`OutputTooLargeError` if its
        ``Content-Length`` is larger than ``max_size``."""
        length = _content_length(response)
        if length is not None and length > self.max_size:
            response.close()
            raise self._too_large_error(run_id, announced=length)

    def _too_large_error(self, run_id: str | None, *, announced: int | None) -> OutputTooLargeError:
        size = f" ({announced} bytes)" if announced is not None else ""
        return OutputTooLargeError(
            f"The stored packet of {_run_name(run_id)}{size} is larger than the maximum of"
            f" {self.max_size} bytes, so the download was aborted. Raise the maximum output"
            " size (TRIGGER_OUTPUTS_MAX_OUTPUT_SIZE) to accept it.",
            limit=self.max_size,
            run_id=run_id,
        )

    def _too_slow_error(self, url: str, run_id: str | None) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"The storage host {url_host(url)} did not send {_subject(run_id)} within the time"
            f" budget of {self.retry_policy.max_time:g} s, so the download was aborted."
            " Try again later, or raise TRIGGER_OUTPUTS_MAX_RETRY_TIME if the storage"
            " host is this slow.",
            run_id=run_id,
        )

    def _read_body(
        self,
        response: requests.Response,
        url: str,
        run_id: str | None,
        *,
        retry_truncated: bool,
        deadline: float,
        chunk_size: int = 64 * 1024,
    ) -> Iterator[bytes]:
        """Yield the body in chunks, enforcing the size cap, the announced
        length and the time budget. A body cut short raises
        :class:`TransientError` when ``retry_truncated`` is set, else
        :class:`~flask_trigger_outputs.errors.StorageError`.

        :param deadline: the time on the retry policy's clock by which the
            body must have arrived. The time the caller spends between
            chunks moves it later, so only waiting for the storage host
            counts.
        """
        # urllib3 checks the encoded length itself when there is a coding.
        expected = _decoded_length(response)
        received = 0
        reason: str | None = None
        cause: BaseException | None = None

        clock = self.retry_policy.clock
        try:
            for chunk in response.iter_content(chunk_size):
                # The read timeout bounds only the gap before each chunk, so a
                # body sent slowly enough would otherwise never time out.
                if clock() > deadline:
                    raise self._too_slow_error(url, run_id)
                received += len(chunk)
                if received > self.max_size:
                    raise self._too_large_error(run_id, announced=None)
                yielded_at = clock()
                yield chunk
                deadline += clock() - yielded_at
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            reason = f"body cut short after {received} bytes ({type(exc).__name__})"
            cause = exc
        except requests.exceptions.ContentDecodingError:
            raise StorageError(
                f"The storage host {url_host(url)} sent a body for {_subject(run_id)} that"
                f" could not be decoded (Content-Encoding"
                f" {response.headers.get('Content-Encoding')!r}).",
                run_id=run_id,
                retryable=False,
            ) from None

        if reason is None and expected is not None and received < expected:
            reason = f"body cut short: {received} of {expected} bytes"

        if reason is None:
            return
        if retry_truncated:
            raise TransientError(reason, cause=cause)
        raise StorageError(
            f"Downloading {_subject(run_id)} from {url_host(url)} failed: {reason}.",
            run_id=run_id,
        )

    def _check_url(self, url: object, run_id: str | None) -> None:
        scheme = url.split(":", 1)[0].lower() if isinstance(url, str) else ""
        if (
            not isinstance(url, str)
            or scheme not in ("http", "https")
            or URL_CHARACTERS.fullmatch(url) is None
        ):
            raise StorageError(
                f"Trigger.dev returned an invalid presigned URL for {_run_name(run_id)}:"
                " expected an http or https URL of printable ASCII characters.",
                run_id=run_id,
                retryable=False,
            )


def _run_name(run_id: str | None) -> str:
    return f"run {run_id!r}" if run_id else "the run"


def _subject(run_id: str | None) -> str:
    return f"the packet of run {run_id!r}" if run_id else "a packet"


def _decoded_length(response: requests.Response) -> int | None:
    """Return the length of the body as iter_content yields it, or ``None``.

    With a content coding, ``Content-Length`` counts the encoded bytes, which
    differ from the decoded bytes that are read and relayed.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    return _content_length(response) if encoding == "identity" else None


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _read_error_code(response: requests.Response) -> str | None:
    """Return the S3-style ``<Code>`` of an error body, if there is one."""
    try:
        head = response.raw.read(_ERROR_BODY_LIMIT, decode_content=True)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        return None  # the code only improves the message, so a failed read is ignored

    match = _S3_ERROR_CODE.search(head or b"")
    return match.group(1).decode("ascii") if match else None
