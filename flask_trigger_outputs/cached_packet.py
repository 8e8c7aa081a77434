"""The cache entry of a finished run's output or payload: the stored bytes
and the JSON text that a response sends."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from .errors import PacketDecodeError


def dump_json(value: Any, *, run_id: str | None) -> bytes:
    """Serialize a packet's JSON form to the compact UTF-8 JSON text that
    responses send and that the size of an inline packet is measured on.

    :raises PacketDecodeError: if the value contains NaN or Infinity.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as error:
        raise PacketDecodeError(
            f"The packet of run {run_id!r} contains NaN or Infinity, which JSON cannot represent.",
            run_id=run_id,
        ) from error
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JavaScript strings may hold one) has no UTF-8
        # form, so escape every non-ASCII character as \uXXXX instead.
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


@dataclass(frozen=True)
class CachedPacket:
    """A finished run's output or payload, stored in the form a response
    needs.

    ``json_body`` is the UTF-8 JSON text of the packet's JSON form, which is
    what Trigger.dev's ``parsePacketAsJson`` returns (the ``json`` half of a
    superjson packet). It is serialized once, when the entry is built, so a
    cache hit copies bytes into the response instead of decoding and
    serializing the value again. ``data`` keeps the packet as stored, for the
    raw route and for typed decoding.

    The typed value is not cached: Python containers are mutable and a value
    shared between requests could be changed by one of them. :meth:`decode`
    builds a fresh value from ``data`` on every call, without any request.
    """

    #: The packet bytes as stored by Trigger.dev.
    data: bytes
    #: The packet's media type, such as ``application/super+json``.
    data_type: str
    #: Whether the packet was downloaded from a presigned URL (``True``) or
    #: arrived inline in the run (``False``).
    offloaded: bool
    #: UTF-8 JSON text of the packet's JSON form.
    json_body: bytes

    @classmethod
    def from_data(
        cls,
        data: bytes,
        content_type: str | None,
        *,
        offloaded: bool,
        run_id: str | None = None,
    ) -> CachedPacket:
        """Decode a packet once and build its cache entry.

        Only the JSON form is decoded here. A typed read through
        :meth:`decode` decodes ``data`` again, so the first typed read of
        an uncached packet decodes it twice.

        :param data: the packet bytes.
        :param content_type: the packet's data type or the download's
            ``Content-Type`` header; ``None`` means ``application/json``.
        :param offloaded: whether the packet came from a presigned URL.
        :param run_id: the run, named in error messages.
        :raises PacketDecodeError: if the bytes do not match the data type.
        :raises StorageError: if the bytes are a storage host's XML error.
        """
        from .decoding import decode_packet, media_type

        value = decode_packet(data, content_type, as_json=True, run_id=run_id)
        return cls(
            data=data,
            data_type=media_type(content_type),
            offloaded=offloaded,
            json_body=dump_json(value, run_id=run_id),
        )

    @classmethod
    def from_json_value(cls, value: Any, *, run_id: str | None = None) -> CachedPacket:
        """Build the entry of an inline packet that the API already returned
        as a JSON value.

        :param value: the decoded ``output`` or ``payload`` field of a run.
        :param run_id: the run, named in error messages.
        """
        body = dump_json(value, run_id=run_id)
        return cls(data=body, data_type="application/json", offloaded=False, json_body=body)

    @property
    def size(self) -> int:
        """The size of the stored packet in bytes."""
        return len(self.data)

    @property
    def nbytes(self) -> int:
        """The memory this entry takes, counting shared buffers once."""
        total = sys.getsizeof(self.data)
        if self.json_body is not self.data:
            total += sys.getsizeof(self.json_body)
        return total + 200  # the dataclass instance and its attributes

    def decode(self, *, as_json: bool = False, run_id: str | None = None) -> Any:
        """Build a fresh Python value from the cached bytes.

        :param as_json: return the JSON form instead of the typed value.
        :param run_id: the run, named in error messages.
        """
        if as_json:
            return json.loads(self.json_body)

        from .decoding import decode_packet

        return decode_packet(self.data, self.data_type, run_id=run_id)
