"""Encode Python values as superjson, the way superjson's own serializer
walks a value."""

from __future__ import annotations

import array
import json
import math
import re
from datetime import datetime
from typing import Any

from .convert import _format_date
from .document import DEFAULT_MAX_DEPTH
from .types import JSURL, JSError, JSMap, JSRegExp, JSSet

#: Largest integer that a JavaScript number represents exactly. Larger ints
#: are written as BigInt.
MAX_SAFE_INTEGER = 2**53 - 1


_TYPECODE_NAMES = {
    "b": "Int8Array",
    "B": "Uint8Array",
    "h": "Int16Array",
    "H": "Uint16Array",
    "f": "Float32Array",
    "d": "Float64Array",
    "q": "BigInt64Array",
    "Q": "BigUint64Array",
}
for _code, _name in (
    ("i", "Int32Array"),
    ("I", "Uint32Array"),
    ("l", "Int32Array"),
    ("L", "Uint32Array"),
):
    if array.array(_code).itemsize == 4:
        _TYPECODE_NAMES[_code] = _name
    elif array.array(_code).itemsize == 8:
        _TYPECODE_NAMES[_code] = "BigInt64Array" if _code.islower() else "BigUint64Array"

_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class _Writer:
    """Turn a Python value into the ``json`` half and the meta of a
    superjson document, the way superjson's own serializer walks a value."""

    def __init__(self, max_depth: int, escaped: bool) -> None:
        self.max_depth = max_depth
        self.escaped = escaped
        self.needs_escaping = False
        # id -> (value, paths where it occurs); the value keeps the id valid.
        self.identities: dict[int, tuple[Any, list[list[Any]]]] = {}
        self.results: dict[int, tuple[Any, Any]] = {}
        self.ancestors: set[int] = set()

    def escape_key(self, key: Any) -> str:
        text = str(key)
        if "\\" in text:
            if not self.escaped:
                self.needs_escaping = True
            text = text.replace("\\", "\\\\")
        if self.escaped and text.startswith("$"):
            text = "\\" + text
        return text.replace(".", "\\.")

    def stringify_path(self, path: list[Any]) -> str:
        return ".".join(self.escape_key(key) for key in path)

    def walk(self, value: Any, path: list[Any]) -> tuple[Any, Any]:
        if value is None or value is True or value is False:
            return value, None
        kind = type(value)
        if kind is str:
            return value, None
        if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
            if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                return int(value), None
            return str(int(value)), ["bigint"]
        if isinstance(value, bool):
            return bool(value), None
        if isinstance(value, float):
            if math.isnan(value):
                return "NaN", ["number"]
            if math.isinf(value):
                return ("Infinity" if value > 0 else "-Infinity"), ["number"]
            if value == 0 and math.copysign(1.0, value) < 0:
                return "-0", ["number"]
            return float(value), None
        if isinstance(value, JSURL):
            return str(value), ["URL"]
        if isinstance(value, str):
            return str(value), None

        if len(path) > self.max_depth:
            raise ValueError(
                f"The value is nested more than {self.max_depth} levels deep "
                "to encode as superjson."
            )

        key = id(value)
        occurrence = self.identities.get(key)
        if occurrence is None:
            self.identities[key] = (value, [path])
        else:
            occurrence[1].append(path)
        result = self.results.get(key)
        if result is not None:
            return result

        if key in self.ancestors:
            return None, None

        simple = self.walk_simple(value)
        if simple is not None:
            self.results[key] = simple
            return simple

        self.ancestors.add(key)
        try:
            result = self.walk_container(value, path)
        finally:
            self.ancestors.discard(key)
        self.results[key] = result
        return result

    def walk_simple(self, value: Any) -> tuple[Any, Any] | None:
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    f"Cannot encode the naive datetime {value.isoformat()!r} "
                    "as a JavaScript Date; attach a tzinfo."
                )
            return _format_date(value), ["Date"]
        if isinstance(value, JSRegExp):
            return str(value), ["regexp"]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return list(bytes(value)), [["custom", "buffer"]]
        if isinstance(value, array.array):
            name = _TYPECODE_NAMES.get(value.typecode)
            if name is None:
                raise TypeError(
                    f"Cannot encode an array.array of typecode {value.typecode!r} "
                    "as a JavaScript typed array."
                )
            if value.typecode in "fd":
                items: list[Any] = [self.walk(item, [])[0] for item in value]
            elif value.typecode in "qQ" or name.startswith("Big"):
                items = [str(item) for item in value]
            else:
                items = value.tolist()
            return items, [["typed-array", name]]
        return None

    def walk_container(self, value: Any, path: list[Any]) -> tuple[Any, Any]:
        if isinstance(value, (JSError, BaseException)):
            fields: dict[str, Any]
            if isinstance(value, JSError):
                fields = {"name": value.name, "message": value.message}
                cause = value.cause
            else:
                fields = {"name": type(value).__name__, "message": str(value)}
                cause = value.__cause__
            if cause is not None:
                fields["cause"] = cause
            json_value, inner = self.walk_entries(fields.items(), path)
            return json_value, (["Error", inner] if inner else ["Error"])

        if isinstance(value, dict) and all(type(key) is str for key in value):
            json_value, inner = self.walk_entries(value.items(), path)
            return json_value, (inner or None)

        if isinstance(value, (dict, JSMap)):
            entries = value.items() if isinstance(value, dict) else value
            pairs = []
            inner = {}
            for row, (entry_key, entry_value) in enumerate(entries):
                key_json, key_annotations = self.walk(entry_key, [*path, row, 0])
                value_json, value_annotations = self.walk(entry_value, [*path, row, 1])
                pairs.append([key_json, value_json])
                self.add_inner(inner, f"{row}.0", key_annotations)
                self.add_inner(inner, f"{row}.1", value_annotations)
            return pairs, (["map", inner] if inner else ["map"])

        if isinstance(value, (set, frozenset, JSSet)):
            json_value, inner = self.walk_entries(enumerate(value), path)
            return json_value, (["set", inner] if inner else ["set"])

        if isinstance(value, (list, tuple)):
            json_value, inner = self.walk_entries(enumerate(value), path)
            return json_value, (inner or None)

        raise TypeError(f"Cannot encode a value of type {type(value).__name__} as superjson.")

    def walk_entries(self, entries: Any, path: list[Any]) -> tuple[Any, dict[str, Any]]:
        inner: dict[str, Any] = {}
        as_object = not isinstance(entries, enumerate)
        json_value: Any = {} if as_object else []
        for key, item in entries:
            item_json, annotations = self.walk(item, [*path, key])
            if as_object:
                json_value[key] = item_json
            else:
                json_value.append(item_json)
            self.add_inner(inner, self.escape_key(key), annotations)
        return json_value, inner

    def add_inner(self, inner: dict[str, Any], key: str, annotations: Any) -> None:
        if annotations is None:
            return
        if isinstance(annotations, list):
            inner[key] = annotations
        else:
            for subkey, tree in annotations.items():
                inner[f"{key}.{subkey}"] = tree

    def equalities(self) -> Any:
        result: dict[str, list[str]] = {}
        root_paths: list[str] | None = None
        for _value, paths in self.identities.values():
            if len(paths) <= 1:
                continue
            ordered = sorted(paths, key=len)
            representative, identical = ordered[0], ordered[1:]
            if not representative:
                root_paths = [self.stringify_path(path) for path in identical]
            else:
                result[self.stringify_path(representative)] = [
                    self.stringify_path(path) for path in identical
                ]
        if root_paths is not None:
            return [root_paths, result] if result else [root_paths]
        return result or None


def serialize(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Build the ``{"json": ..., "meta": ...}`` object for a value.

    :func:`stringify` documents the mapping and the errors.
    """
    writer = _Writer(max_depth, escaped=False)
    try:
        json_value, annotations = writer.walk(value, [])
        if writer.needs_escaping:
            # A key contains a backslash, which superjson 2.2.1's path syntax
            # cannot carry: write the escaping of meta.v 1 instead.
            writer = _Writer(max_depth, escaped=True)
            json_value, annotations = writer.walk(value, [])
    except RecursionError:
        raise ValueError("The value is nested too deeply to encode as superjson.") from None
    equalities = writer.equalities()

    document: dict[str, Any] = {"json": json_value}
    meta: dict[str, Any] = {}
    if annotations:
        meta["values"] = annotations
    if equalities:
        meta["referentialEqualities"] = equalities
    if meta and writer.escaped:
        meta["v"] = 1
    if meta:
        document["meta"] = meta
    return document


def stringify(value: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> str:
    """Encode a Python value as superjson text that the official Trigger.dev
    SDK decodes to the matching JavaScript value.

    The mapping, in brief:

    - ``None`` is null, and an int beyond 2**53 - 1 is a BigInt.
    - NaN, the infinities and -0.0 are numbers.
    - An aware datetime is a Date.
    - A dict with only str keys is an object. Any other dict, and a
      :class:`JSMap`, is a Map.
    - A set, a frozenset and a :class:`JSSet` are Sets.
    - bytes are a Node Buffer, and an :class:`array.array` a typed array.
    - :class:`JSRegExp`, :class:`JSURL` and :class:`JSError` (or any
      exception) are their JavaScript types.
    - Lists and tuples are arrays.

    An object reached twice is written at each place and listed in
    ``referentialEqualities``. A cycle is written as null and restored by
    the decoder.

    :param value: the value to encode.
    :param max_depth: the deepest nesting accepted.
    :raises TypeError: the value contains a type with no JavaScript
        counterpart.
    :raises ValueError: a datetime is naive or the value is nested deeper
        than ``max_depth``.
    """
    text = json.dumps(
        serialize(value, max_depth=max_depth),
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )
    if _SURROGATE_RE.search(text):
        # JSON.stringify escapes lone surrogates; a raw one is not UTF-8.
        text = _SURROGATE_RE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return text
