"""Downloads of offloaded packets from presigned object-storage URLs.

The storage host gets its own :class:`requests.Session`, separate from the
API session, that never sends credentials: no ``Authorization`` header, no
cookies, no ``.netrc`` login. S3 and R2 reject a request that carries two
auth mechanisms, and the secret key must not leak to the storage host.

A presigned URL carries its signature in the query string, so the URL is
sent exactly as received and never appears in logs or messages with its
query: :func:`redact_url` removes it.
"""

from __future__ import annotations

import http.cookiejar
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import urllib3

from ._retry import RetryPolicy, TransientError, call_with_retry
from .errors import OutputTooLargeError, StorageError, UpstreamTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Default maximum size of a downloaded packet: Trigger.dev's limit on a
#: task output, 10 MB.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024

# Same-origin redirects followed before giving up.
_MAX_REDIRECTS = 3

# Longest part of an error body read to find an S3 error code.
_ERROR_BODY_LIMIT = 4096

_S3_ERROR_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")

# Characters a presigned URL may contain: printable ASCII without spaces.
_URL_CHARACTERS = re.compile(r"[\x21-\x7e]+")


#: urllib3 loggers whose DEBUG lines contain request targets with their
#: query string ("GET /key?X-Amz-Signature=... HTTP/1.1" in urllib3 2.x).
_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.poolmanager")

# Query parameters that carry the signature of a presigned URL: S3 and R2
# (SigV4 and SigV2), Google Cloud Storage, Azure shared access signatures.
_SIGNED_QUERY = re.compile(r"\?[^\s\"']*(?:X-Amz-Signature|Signature|X-Goog-Signature|sig)=")


class _RedactPresignedQuery(logging.Filter):
    """Remove the query string from urllib3 log arguments that contain a
    URL signature, so DEBUG logging does not write presigned URLs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, str) and _SIGNED_QUERY.search(arg) for arg in record.args
        ):
            record.args = tuple(
                _redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def _redact_query(text: str) -> str:
    match = _SIGNED_QUERY.search(text)
    if match is None:
        return text
    end = re.search(r"[\s\"']", text[match.start() :])
    tail = text[match.start() + end.start() :] if end else ""
    return text[: match.start()] + "?<query redacted>" + tail


_REDACTION_FILTER = _RedactPresignedQuery()


def _redact_urllib3_logs() -> None:
    """Add the redacting filter to urllib3's loggers, once per process."""
    for name in _URLLIB3_LOGGERS:
        urllib3_logger = logging.getLogger(name)
        if _REDACTION_FILTER not in urllib3_logger.filters:
            urllib3_logger.addFilter(_REDACTION_FILTER)


def redact_url(url: str) -> str:
    """Return ``url`` without its query string, fragment and user info.

    Use it wherever a presigned URL would reach a log line or a message:
    the query carries the signature that grants access.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"

    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _RejectAllCookies(http.cookiejar.DefaultCookiePolicy):
    """Cookie policy that neither stores nor sends any cookie."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: object) -> bool:
        return False

    def path_return_ok(self, path: str, request: object) -> bool:
        return False


class _NoCredentials(requests.auth.AuthBase):
    """Authentication hook that removes any ``Authorization`` and ``Cookie``
    header from a prepared request.

    requests copies the session's cookies into a fresh jar for every
    request, so the jar's policy alone does not keep them from being sent.
    This hook runs after the cookies are added. Setting it as the session's
    ``auth`` also stops requests from looking up ``.netrc`` credentials.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        request.headers.pop("Cookie", None)
        return request


def create_storage_session() -> requests.Session:
    """Create a session for presigned URLs that never sends credentials or
    cookies and never stores cookies it receives.

    It also adds a filter to urllib3's loggers that removes the query string
    of a signed URL from their DEBUG lines, which otherwise contain the
    request target with its signature.
    """
    _redact_urllib3_logs()
    session = requests.Session()
    session.cookies.set_policy(_RejectAllCookies())
    session.auth = _NoCredentials()
    return session


def _prepare_verbatim(
    session: requests.Session, request: requests.Request
) -> tuple[requests.PreparedRequest, dict[str, Any]]:
    """Prepare ``request`` with its URL exactly as given, and return it with
    the environment settings (proxies, CA bundle) to send it with.

    requests re-quotes a URL while preparing it (``%7E`` becomes ``~``, for
    example), which can break a presigned URL's signature, so the prepared
    URL is put back as received. urllib3 still writes the hex digits of
    existing percent-escapes in upper case; S3 and R2 canonicalize the query
    before checking the signature, so that does not change its meaning.
    """
    url = str(request.url)
    prepared = session.prepare_request(request)
    prepared.url = url
    settings = session.merge_environment_settings(url, {}, True, None, None)
    return prepared, dict(settings)


class ExpiredUrlError(StorageError):
    """The storage host rejected a presigned URL with 403, usually because
    it expired. Retrying the same URL cannot help: retrieve the run again
    for a fresh one. It keeps the ``storage_error`` code of its base class,
    so a route that lets it through responds as to any storage failure."""


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
        bounds the gaps between bytes, not the whole download; the size cap
        bounds the whole.
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
        :raises UpstreamTimeoutError: the storage host kept timing out.
        :raises StorageError: any other failure, after retries where they
            make sense.
        """
        self._check_url(url, run_id)

        def attempt() -> Packet:
            response = self._open(url, run_id)
            try:
                chunks = self._read_body(response, url, run_id, retry_truncated=True)
                data = b"".join(chunks)
            finally:
                response.close()
            return Packet(data=data, content_type=response.headers.get("Content-Type"))

        return self._with_retry(attempt, url, run_id)

    def stream(
        self, url: str, *, run_id: str | None = None, chunk_size: int = 64 * 1024
    ) -> tuple[str | None, Iterator[bytes]]:
        """Open the packet behind a presigned URL and return its
        ``Content-Type`` and an iterator over the body.

        Opening the connection and reading the status are retried like
        :meth:`download`. Once the first chunk is out, a failure cannot be
        retried: the iterator raises
        :class:`~flask_trigger_outputs.errors.StorageError` when the body is
        cut short and :class:`~flask_trigger_outputs.errors.OutputTooLargeError`
        when it passes ``max_size``. Close the iterator (or exhaust it) to
        release the connection.

        :raises ExpiredUrlError: the storage host responded with 403.
        :raises OutputTooLargeError: the announced ``Content-Length`` is
            larger than ``max_size``.
        :raises StorageError: the download could not be opened.
        """
        self._check_url(url, run_id)
        response = self._with_retry(lambda: self._open(url, run_id), url, run_id)

        try:
            self._check_announced_size(response, run_id)
        except OutputTooLargeError:
            response.close()
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from self._read_body(
                    response, url, run_id, retry_truncated=False, chunk_size=chunk_size
                )
            finally:
                response.close()

        return response.headers.get("Content-Type"), chunks()

    def _with_retry(self, attempt: Callable[[], T], url: str, run_id: str | None) -> T:
        host = _host(url)
        try:
            return call_with_retry(
                attempt,
                policy=self.retry_policy,
                operation=f"Downloading {_subject(run_id)} from {host}",
                run_id=run_id,
            )
        except TransientError as failure:
            raise self._give_up_error(failure, host, run_id) from (failure.cause or failure)

    def _give_up_error(
        self, failure: TransientError, host: str, run_id: str | None
    ) -> StorageError | UpstreamTimeoutError:
        tries = f"{failure.attempts} attempt{'s' if failure.attempts != 1 else ''}"
        if failure.cause is not None and _is_timeout(failure.cause):
            return UpstreamTimeoutError(
                f"The storage host {host} did not respond within {self.read_timeout:g} s"
                f" while downloading {_subject(run_id)} ({tries}). Try again later.",
                run_id=run_id,
            )

        return StorageError(
            f"Downloading {_subject(run_id)} from {host} failed ({failure.reason})"
            f" after {tries}. Check that the storage host is reachable and try again.",
            run_id=run_id,
            status_code=failure.status_code,
        )

    def _open(self, url: str, run_id: str | None) -> requests.Response:
        """Send the GET request and return a response with a 2xx status whose
        body is not read yet, following same-origin redirects."""
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._send(current, run_id)

            if response.is_redirect:
                target = urllib.parse.urljoin(current, response.headers["Location"])
                response.close()
                if _origin(target) != _origin(current):
                    raise StorageError(
                        f"The storage host {_host(current)} redirected the download of"
                        f" {_subject(run_id)} to another host ({_host(target)}); a presigned"
                        " URL is only valid for its own host, so the redirect was not followed.",
                        run_id=run_id,
                    )
                self._check_url(target, run_id)
                current = target
                continue

            if response.ok:
                return response

            raise self._status_error(response, current, run_id)

        raise StorageError(
            f"The storage host {_host(url)} redirected the download of {_subject(run_id)}"
            f" more than {_MAX_REDIRECTS} times.",
            run_id=run_id,
        )

    def _send(self, url: str, run_id: str | None) -> requests.Response:
        session = self._session
        try:
            prepared, settings = _prepare_verbatim(session, requests.Request("GET", url))
            return session.send(
                prepared,
                allow_redirects=False,
                timeout=(self.connect_timeout, self.read_timeout),
                **settings,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(type(exc).__name__, cause=exc) from exc
        except requests.RequestException as exc:
            raise StorageError(
                f"Could not request {_subject(run_id)} from {_host(url)} ({type(exc).__name__}).",
                run_id=run_id,
            ) from exc

    def _status_error(self, response: requests.Response, url: str, run_id: str | None) -> Exception:
        """Turn an error status into the exception to raise: transient for
        408, 429 and 5xx, :class:`ExpiredUrlError` for 403, else final."""
        status = response.status_code
        error_code = _read_error_code(response)
        response.close()
        detail = f"HTTP {status}, {error_code}" if error_code else f"HTTP {status}"

        if status == 403:
            return ExpiredUrlError(
                f"The storage host {_host(url)} rejected the presigned URL for"
                f" {_subject(run_id)} ({detail}); it has probably expired."
                " Retrieve the run again for a fresh URL.",
                run_id=run_id,
                status_code=status,
            )
        if status in (408, 429) or status >= 500:
            return TransientError(detail, status_code=status)

        return StorageError(
            f"The storage host {_host(url)} responded with {detail} for {_subject(run_id)}."
            " The stored packet may have been deleted.",
            run_id=run_id,
            status_code=status,
        )

    def _check_announced_size(self, response: requests.Response, run_id: str | None) -> None:
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

    def _read_body(
        self,
        response: requests.Response,
        url: str,
        run_id: str | None,
        *,
        retry_truncated: bool,
        chunk_size: int = 64 * 1024,
    ) -> Iterator[bytes]:
        """Yield the body in chunks, enforcing the size cap and the
        announced length. A body cut short raises :class:`TransientError`
        when ``retry_truncated`` is set, else
        :class:`~flask_trigger_outputs.errors.StorageError`."""
        self._check_announced_size(response, run_id)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        # With a content coding, Content-Length counts the encoded bytes,
        # which differ from the decoded bytes counted here; urllib3 still
        # checks the encoded length.
        expected = _content_length(response) if encoding == "identity" else None
        received = 0
        reason: str | None = None
        cause: BaseException | None = None

        try:
            for chunk in response.iter_content(chunk_size):
                received += len(chunk)
                if received > self.max_size:
                    raise self._too_large_error(run_id, announced=None)
                yield chunk
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            reason = f"body cut short after {received} bytes ({type(exc).__name__})"
            cause = exc
        except requests.exceptions.ContentDecodingError as exc:
            raise StorageError(
                f"The storage host {_host(url)} sent a body for {_subject(run_id)} that"
                f" could not be decoded (Content-Encoding {encoding!r}).",
                run_id=run_id,
            ) from exc

        if reason is None and expected is not None and received < expected:
            reason = f"body cut short: {received} of {expected} bytes"

        if reason is None:
            return
        if retry_truncated:
            raise TransientError(reason, cause=cause)
        raise StorageError(
            f"Downloading {_subject(run_id)} from {_host(url)} failed: {reason}.",
            run_id=run_id,
        ) from cause

    def _check_url(self, url: object, run_id: str | None) -> None:
        scheme = url.split(":", 1)[0].lower() if isinstance(url, str) else ""
        if (
            not isinstance(url, str)
            or scheme not in ("http", "https")
            or _URL_CHARACTERS.fullmatch(url) is None
        ):
            raise StorageError(
                f"Trigger.dev returned an invalid presigned URL for {_run_name(run_id)}:"
                " expected an http or https URL of printable ASCII characters.",
                run_id=run_id,
            )


class PacketUploader:
    """Upload packets to presigned PUT URLs, with retries.

    Used by :meth:`~flask_trigger_outputs.client.TriggerClient.trigger` for
    payloads too large to send inline. Like :class:`PacketDownloader`, it
    uses a session without credentials or cookies and sends the URL exactly
    as received. Retries cover 5xx, 408 and 429 responses, connection errors
    and timeouts; a PUT of the same bytes to the same URL is idempotent.

    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for the storage host's answer.
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
        host = _host(url)
        subject = f"the payload of task {task_id!r}"
        if _URL_CHARACTERS.fullmatch(url) is None or _origin(url)[0] not in ("http", "https"):
            raise StorageError(
                f"Trigger.dev returned an invalid upload URL for {subject}: expected an"
                " http or https URL of printable ASCII characters.",
                task_id=task_id,
            )

        def attempt() -> None:
            request = requests.Request(
                "PUT", url, data=data, headers={"Content-Type": content_type}
            )
            try:
                prepared, settings = _prepare_verbatim(self._session, request)
                settings["stream"] = False
                response = self._session.send(
                    prepared,
                    allow_redirects=False,
                    timeout=(self.connect_timeout, self.read_timeout),
                    **settings,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(type(exc).__name__, cause=exc) from exc
            except requests.RequestException as exc:
                raise StorageError(
                    f"Could not upload {subject} to {host} ({type(exc).__name__}).",
                    task_id=task_id,
                ) from exc

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
            tries = f"{failure.attempts} attempt{'s' if failure.attempts != 1 else ''}"
            if failure.cause is not None and _is_timeout(failure.cause):
                raise UpstreamTimeoutError(
                    f"The storage host {host} did not respond within {self.read_timeout:g} s"
                    f" while uploading {subject} ({tries}). Try again later.",
                    task_id=task_id,
                ) from failure.cause
            raise StorageError(
                f"Uploading {subject} to {host} failed ({failure.reason}) after {tries}."
                " Check that the storage host is reachable and try again.",
                task_id=task_id,
                status_code=failure.status_code,
            ) from (failure.cause or failure)


def _run_name(run_id: str | None) -> str:
    return f"run {run_id!r}" if run_id else "the run"


def _subject(run_id: str | None) -> str:
    return f"the packet of run {run_id!r}" if run_id else "a packet"


def _host(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or "<no host>"
    except ValueError:
        return "<invalid host>"


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # requests reports a read timeout in the middle of a body as a
    # ConnectionError wrapping urllib3's ReadTimeoutError.
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def _read_error_code(response: requests.Response) -> str | None:
    """Return the S3-style ``<Code>`` of an error body, if there is one."""
    try:
        head = response.raw.read(_ERROR_BODY_LIMIT, decode_content=True)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        return None  # the code only improves the message, so a failed read is ignored

    match = _S3_ERROR_CODE.search(head or b"")
    return match.group(1).decode("ascii") if match else None
