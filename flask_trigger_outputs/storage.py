"""The session that requests presigned object-storage URLs, the redaction
of those URLs from logs and messages, and the request and error helpers
that downloads and uploads share.

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
from typing import Any

import requests
import urllib3

from ._retry import TransientError
from .errors import StorageError, UpstreamTimeoutError

#: Characters a presigned URL may contain: printable ASCII without spaces.
URL_CHARACTERS = re.compile(r"[\x21-\x7e]+")


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


def send_verbatim(
    session: requests.Session,
    request: requests.Request,
    *,
    timeout: tuple[float, float],
    stream: bool,
) -> requests.Response:
    """Send ``request`` with its URL exactly as given, without following
    redirects.

    :raises TransientError: the connection failed or timed out, so another
        attempt may succeed.
    :raises requests.RequestException: any other failure, for the caller to
        turn into a :class:`~flask_trigger_outputs.errors.StorageError`
        that names what was sent.
    """
    try:
        prepared, settings = _prepare_verbatim(session, request)
        settings["stream"] = stream
        return session.send(prepared, allow_redirects=False, timeout=timeout, **settings)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(type(exc).__name__, cause=exc) from exc


def give_up_error(
    failure: TransientError,
    *,
    verb: str,
    subject: str,
    host: str,
    connect_timeout: float,
    read_timeout: float,
    run_id: str | None = None,
    task_id: str | None = None,
) -> StorageError | UpstreamTimeoutError:
    """Build the error for a transfer whose retries ran out: a timeout when
    the last failure was one, else a storage error with the last status.

    :param verb: ``"download"`` or ``"upload"``.
    """
    tries = f"{failure.attempts} attempt{'s' if failure.attempts != 1 else ''}"
    if isinstance(failure.cause, requests.ConnectTimeout):
        return UpstreamTimeoutError(
            f"The storage host {host} did not accept a connection within the connect"
            f" timeout of {connect_timeout:g} s while {verb}ing {subject} ({tries})."
            " Try again later.",
            run_id=run_id,
            task_id=task_id,
        )
    if failure.cause is not None and _is_timeout(failure.cause):
        return UpstreamTimeoutError(
            f"The storage host {host} did not respond within the read timeout of"
            f" {read_timeout:g} s while {verb}ing {subject} ({tries}). Try again later.",
            run_id=run_id,
            task_id=task_id,
        )

    direction = "from" if verb == "download" else "to"
    return StorageError(
        f"{verb.capitalize()}ing {subject} {direction} {host} failed ({failure.reason})"
        f" after {tries}. Check that the storage host is reachable and try again.",
        run_id=run_id,
        task_id=task_id,
        status_code=failure.status_code,
    )


def url_host(url: str) -> str:
    """Return the host and port of ``url`` without user info, for messages."""
    try:
        return urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or "<no host>"
    except ValueError:
        return "<invalid host>"


def url_origin(url: str) -> tuple[str, str]:
    """Return the lower-case scheme and host of ``url``, to compare origins."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # requests reports a read timeout in the middle of a body as a
    # ConnectionError wrapping urllib3's ReadTimeoutError.
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )
