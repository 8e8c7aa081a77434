"""Packets as the emulator stores and renders them.

A packet is Trigger.dev's ``{data, dataType}`` pair. Task outputs are written
as the official SDK writes them (``text/plain`` for a string, superjson for
any other value), and inline packets are rendered into the run response as
the Trigger.dev server renders them, with ``parsePacketAsJson``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .. import superjson

JSON = "application/json"
SUPERJSON = "application/super+json"
TEXT = "text/plain"
STORE = "application/store"

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

#: File extension of an offloaded packet by data type, as the official SDK
#: names its uploads.
_EXTENSIONS = {JSON: "json", SUPERJSON: "json", TEXT: "txt"}


@dataclass(frozen=True)
class StoredPacket:
    """A packet stored exactly as given.

    A task that returns a ``StoredPacket`` bypasses the emulator's own
    serialization, so tests can store packets that another serializer wrote.
    ``data`` None is a packet without data, which is how the SDK stores
    ``undefined``. ``data_type`` ``application/store`` means ``data`` is the
    key of an offloaded packet in the emulator's object store.
    """

    data: str | bytes | None
    data_type: str = JSON


def encode_value(value: Any) -> StoredPacket:
    """Serialize a task's return value as the official SDK's ``stringifyIO`` does.

    A string becomes ``text/plain``; anything else becomes superjson text.
    A :class:`StoredPacket` is returned unchanged.
    """
    if isinstance(value, StoredPacket):
        return value
    if isinstance(value, str):
        return StoredPacket(value, TEXT)
    return StoredPacket(superjson.stringify(value), SUPERJSON)


def packet_bytes(data: str | bytes) -> bytes:
    """Encode packet data as UTF-8 the way Node does.

    Node replaces a lone surrogate with U+FFFD where Python's strict codec
    would raise.
    """
    if isinstance(data, bytes):
        return data
    return _LONE_SURROGATE.sub("\ufffd", data).encode("utf-8")


def packet_text(data: str | bytes) -> str:
    """Return packet data as text, replacing bytes that are not UTF-8."""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def packet_size(packet: StoredPacket) -> int:
    """Return the size of a packet's data in bytes (0 without data)."""
    if packet.data is None:
        return 0
    return len(packet_bytes(packet.data))


def packet_extension(data_type: str) -> str:
    """Return the file extension the official SDK gives an offloaded packet."""
    return _EXTENSIONS.get(data_type, "txt")


def render_as_json(packet: StoredPacket) -> tuple[bool, Any]:
    """Render an inline packet as Trigger.dev's ``parsePacketAsJson`` does.

    Returns ``(present, value)``. A packet without data (or with empty data)
    renders as ``undefined``, which the response leaves out, so ``present``
    is False.

    :raises ValueError: the data is not valid for its data type.
    """
    if not packet.data:
        return False, None

    text = packet_text(packet.data)
    if packet.data_type == JSON:
        return True, json.loads(text)
    if packet.data_type == SUPERJSON:
        return True, superjson.parse_as_json(text)
    return True, text


def decode_typed(packet: StoredPacket) -> Any:
    """Decode a packet into the typed Python value a task receives.

    :raises ValueError: the data is not valid for its data type.
    """
    if not packet.data:
        return None

    text = packet_text(packet.data)
    if packet.data_type == JSON:
        return json.loads(text)
    if packet.data_type == SUPERJSON:
        return superjson.parse(text)
    return text
