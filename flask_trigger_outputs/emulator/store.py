"""An in-memory object store with presigned URLs, shaped like S3 and R2.

A presigned URL carries its issue time, its lifetime and an HMAC-SHA256
signature over the method, the exact path and the exact query that precedes
the signature. Any change to the path or the query, an expired URL, or a
request that also carries an ``Authorization`` header is rejected with 403 and
an S3-style XML error body, as Cloudflare R2 and Amazon S3 do.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote
from xml.sax.saxutils import escape

#: URL path under which the store serves its objects.
STORAGE_PREFIX = "/storage/packets/"

#: The signature is always the last query parameter, so everything before it
#: is covered by the HMAC exactly as the client sends it.
_SIGNATURE_SEPARATOR = "&X-Amz-Signature="

_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

#: S3 error codes for the statuses the emulator responds with.
_ERROR_CODES = {
    400: "InvalidRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    500: "InternalError",
    502: "BadGateway",
    503: "SlowDown",
    504: "GatewayTimeout",
}


@dataclass(frozen=True)
class StoredObject:
    """An object in the store: its bytes and the Content-Type it was uploaded with."""

    data: bytes
    content_type: str


class SignatureError(Exception):
    """A presigned request was rejected.

    :param code: the S3 error code (``AccessDenied``, ``SignatureDoesNotMatch``).
    :param message: the S3 error message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def s3_error_body(code: str, message: str, *, key: str | None = None) -> bytes:
    """Render an S3-style XML error document."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<Error>",
        f"<Code>{escape(code)}</Code>",
        f"<Message>{escape(message)}</Message>",
    ]
    if key is not None:
        parts.append(f"<Key>{escape(key)}</Key>")
    parts.append(f"<RequestId>{secrets.token_hex(8).upper()}</RequestId>")
    parts.append("</Error>")
    return "".join(parts).encode()


def s3_error_code(status: int) -> str:
    """Return the S3 error code that usually comes with an HTTP status."""
    return _ERROR_CODES.get(status, "InternalError")


class ObjectStore:
    """Objects by key, and the presigned URLs that read and write them.

    The signing secret is random per store, so a URL issued by one emulator
    never validates on another, and it has nothing to do with the API key.
    Every method is thread-safe.

    :param url_expiry: lifetime of a presigned URL, in seconds.
    :param clock: returns the current Unix time in seconds; tests inject a
        fake clock to expire URLs without sleeping.
    """

    def __init__(
        self, *, url_expiry: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.url_expiry = url_expiry
        self._clock = clock
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._objects: dict[str, StoredObject] = {}
        # Signatures issued since the last expire_all() call, and the ones
        # that call revoked.
        self._issued: set[str] = set()
        self._revoked: set[str] = set()

    # -- objects ---------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing any previous object."""
        with self._lock:
            self._objects[key] = StoredObject(data, content_type)

    def get(self, key: str) -> StoredObject | None:
        """Return the object stored under ``key``, or None."""
        with self._lock:
            return self._objects.get(key)

    def keys(self) -> list[str]:
        """Return the keys of every stored object."""
        with self._lock:
            return sorted(self._objects)

    # -- presigned URLs --------------------------------------------------

    def presign(
        self, base_url: str, key: str, method: str = "GET", *, corrupt: bool = False
    ) -> str:
        """Build a presigned URL for ``method`` on ``key``.

        :param base_url: scheme and host the client reached the emulator at,
            without a trailing slash.
        :param corrupt: sign with a wrong signature, so the URL is rejected
            with ``SignatureDoesNotMatch``.
        """
        path = STORAGE_PREFIX + quote(key, safe="/")
        issued_at = time.strftime(_DATE_FORMAT, time.gmtime(self._clock()))
        # A random access key per URL keeps two URLs issued in the same second
        # apart, so expire_all() cannot revoke a URL issued after it.
        access_key = "EMU" + secrets.token_hex(8).upper()
        query = (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={access_key}%2F{issued_at[:8]}%2Fauto%2Fs3%2Faws4_request"
            f"&X-Amz-Date={issued_at}"
            f"&X-Amz-Expires={int(self.url_expiry)}"
            "&X-Amz-SignedHeaders=host"
        )
        signature = self._sign(method, path, query)
        with self._lock:
            self._issued.add(signature)
        if corrupt:
            signature = hashlib.sha256(signature.encode()).hexdigest()
        return f"{base_url}{path}?{query}{_SIGNATURE_SEPARATOR}{signature}"

    def verify(self, method: str, raw_path: str, raw_query: str) -> None:
        """Check a presigned request exactly as it arrived.

        :param raw_path: the request path as sent, still percent-encoded.
        :param raw_query: the query string as sent.
        :raises SignatureError: the signature does not match the method, path
            and query, or the URL has expired.
        """
        query, separator, signature = raw_query.rpartition(_SIGNATURE_SEPARATOR)
        if not separator or not signature:
            raise SignatureError(
                "AccessDenied", "Query-string authentication requires the X-Amz-Signature parameter"
            )

        expected = self._sign(method, raw_path, query)
        if not hmac.compare_digest(expected, signature):
            raise SignatureError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )

        params = parse_qs(query, keep_blank_values=True)
        try:
            issued = time.strptime(params["X-Amz-Date"][0], _DATE_FORMAT)
            lifetime = int(params["X-Amz-Expires"][0])
        except (KeyError, IndexError, ValueError):
            raise SignatureError(
                "AccessDenied", "X-Amz-Date and X-Amz-Expires are required"
            ) from None

        expires_at = calendar.timegm(issued) + lifetime
        with self._lock:
            revoked = signature in self._revoked
        if revoked or self._clock() > expires_at:
            raise SignatureError("AccessDenied", "Request has expired")

    def expire_all(self) -> None:
        """Expire every URL issued so far; URLs issued later stay valid."""
        with self._lock:
            self._revoked |= self._issued
            self._issued = set()

    def _sign(self, method: str, path: str, query: str) -> str:
        message = f"{method.upper()}\n{path}\n{query}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()
