"""Decode a stored packet by its data type, and encode values the way the
official SDK does.

A packet is the pair ``(data, dataType)`` Trigger.dev stores for every
output and payload. Offloaded, ``data`` is the body of the presigned GET and
``dataType`` its ``Content-Type`` header. Unlike the official SDK, which
compares the header as an exact string, :func:`media_type` parses it, so
``Application/JSON; charset=utf-8`` is JSON too.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal

from . import superjson
from .errors import PacketDecodeError, StorageError

__all__ = [
    "JSON",
    "STORE",
    "SUPERJSON",
    "TEXT",
    "DataType",
    "decode_packet",
    "encode_packet",
    "media_type",
]

logger = logging.getLogger(__name__)

DataType = Literal["application/json", "application/super+json", "text/plain", "application/store"]

JSON: DataType = "application/json"
SUPERJSON: DataType = "application/super+json"
TEXT: DataType = "text/plain"
STORE: DataType = "application/store"

# How far into a body to look for an S3-style XML error document.
_XML_ERROR_WINDOW = 4096
# Data types whose body is data even when it looks like a storage error.
_DATA_TYPES = frozenset({JSON, SUPERJSON, TEXT, STORE})
_XML_ERROR_CODE_RE = re.compile(r"<Code>\s*([A-Za-z0-9.]{1,64})\s*</Code>")


def media_type(content_type: str | None) -> str:
    """Return the lowercase media type of a ``Content-Type`` value, without
    parameters.

    A missing or empty value is ``application/json``, as in the official
    SDK.

    :param content_type: the header value, such as
        ``"Application/JSON; charset=utf-8"``.
    """
    if content_type is None:
        return JSON
    value = content_type.split(";", 1)[0].strip().lower()
    return value or JSON


def _may_be_storage_error(content_type: str | None) -> bool:
    """Tell whether a body with this ``Content-Type`` may be a storage error
    document: XML, or a missing or unknown type that would otherwise give
    the body as text."""
    if content_type is None or not content_type.split(";", 1)[0].strip():
        return True
    return media_type(content_type) not in _DATA_TYPES


def _xml_error_code(head: str) -> str | None:
    """Return the error code of an S3-style XML error document, or None when
    the text does not start like one."""
    text = head.lstrip("\ufeff \t\r\n")
    if not (text.startswith("<?xml") or text.startswith("<Error>")):
        return None
    if "<Error>" not in text:
        return None
    match = _XML_ERROR_CODE_RE.search(text)
    return match.group(1) if match else "unknown"


def _describe(kind: str, run_id: str | None) -> str:
    if run_id is None:
        return f"The {kind} packet"
    return f"The {kind} packet of run {run_id!r}"


def decode_packet(
    data: str | bytes | None,
    content_type: str | None,
    *,
    as_json: bool = False,
    run_id: str | None = None,
) -> Any:
    """Decode a stored packet by its data type.

    ``application/super+json`` gives typed values (see
    :func:`.superjson.parse`), or with ``as_json`` the JSON form that
    Trigger.dev's API returns for an inline output. ``application/json``
    gives the parsed JSON and ``text/plain`` the text itself in both modes.
    Empty data gives None, as the official SDK gives ``undefined``. An
    unknown data type gives the text and logs a warning.

    A leading byte order mark is ignored in JSON and superjson, as the
    official SDK's download does, and kept in ``text/plain``, where it is
    part of the stored string.

    :param data: the packet data: the body of a presigned download as bytes,
        or inline text.
    :param content_type: the packet's data type or the download's
        ``Content-Type`` header; None means ``application/json``.
    :param as_json: return the JSON form instead of typed values.
    :param run_id: the run the packet belongs to, named in errors.
    :raises StorageError: the body is an S3-style XML error document from
        the storage host instead of a packet, and the data type is XML,
        missing or unknown. A JSON, superjson or ``text/plain`` body is
        decoded as data, because the storage host sends its errors as
        ``application/xml``.
    :raises PacketDecodeError: the body is not UTF-8, not valid JSON or
        superjson, or is an ``application/store`` pointer.
    """
    kind = media_type(content_type)
    if data is None:
        return None
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise PacketDecodeError(
            f"{_describe(kind, run_id)} has data of type {type(data).__name__}; "
            "expected text or bytes.",
            run_id=run_id,
        )

    if isinstance(data, str):
        text = data
        head = text[:_XML_ERROR_WINDOW]
    else:
        raw = bytes(data)
        head = raw[:_XML_ERROR_WINDOW].decode("utf-8", errors="replace")
    code = _xml_error_code(head) if _may_be_storage_error(content_type) else None
    if code is not None:
        raise StorageError(
            f"The storage host returned the error {code} instead of the packet"
            f"{'' if run_id is None else f' of run {run_id!r}'}; "
            "retrieve the run again for a fresh URL.",
            run_id=run_id,
        )
    if not isinstance(data, str):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketDecodeError(
                f"{_describe(kind, run_id)} is not valid UTF-8 "
                f"(invalid byte at offset {exc.start}).",
                run_id=run_id,
            ) from None

    if not text:
        return None

    if kind == STORE:
        raise PacketDecodeError(
            f"{_describe(kind, run_id)} is a pointer to offloaded data, not data; "
            "download it first.",
            run_id=run_id,
        )
    if kind == TEXT:
        return text
    if kind == JSON:
        return _decode_json(text, kind, run_id)
    if kind == SUPERJSON:
        try:
            if as_json:
                return superjson.parse_as_json(text)
            return superjson.parse(text)
        except PacketDecodeError as exc:
            raise PacketDecodeError(
                f"{_describe(kind, run_id)} could not be decoded. {exc.message}", run_id=run_id
            ) from None

    logger.warning(
        "Run %s has a packet of unknown data type %r; returning it as text.", run_id, kind
    )
    return text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json(text: str, kind: str, run_id: str | None) -> Any:
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except ValueError as exc:
        reason = str(exc)
    except RecursionError:
        reason = "nested too deeply"
    raise PacketDecodeError(
        f"{_describe(kind, run_id)} is not valid JSON ({reason}).", run_id=run_id
    )


def encode_packet(value: Any) -> tuple[str, str]:
    """Encode a value as the official SDK's ``stringifyIO`` does: a string
    is stored as ``text/plain``, anything else as ``application/super+json``.

    :param value: the payload or output. ``None`` is JavaScript ``null``.
    :return: ``(data, data_type)``.
    :raises TypeError: the value contains a type with no JavaScript
        counterpart (see :func:`.superjson.stringify`).
    :raises ValueError: a datetime is naive or the value is nested too deeply.
    """
    if isinstance(value, str) and not isinstance(value, superjson.JSURL):
        return value, TEXT
    return superjson.stringify(value), SUPERJSON
