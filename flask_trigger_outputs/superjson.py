"""Decode and encode superjson, the format Trigger.dev stores most task
outputs and payloads in.

A superjson document is ``{"json": <value>, "meta": {...}}``. The ``json``
half is plain JSON in which every value that JSON cannot carry (a Date, a
BigInt, a Map, ``undefined``, ...) is replaced by a placeholder, and
``meta.values`` maps the path of each placeholder to its type. ``meta.
referentialEqualities`` lists paths that held the same object, and ``meta.v``
(written by superjson 2.2.7 and later) switches on a stricter escaping of
keys in paths.

:func:`parse` returns typed Python values (docs/decoding.md has the table),
:func:`parse_as_json` returns the type-free JSON form that Trigger.dev's own
API returns for an inline output, and :func:`stringify` writes a document
that the official SDK reads back.

Both decoders touch only the annotated paths, so a large document costs
little more than :func:`json.loads`.
"""

from __future__ import annotations

import array
import copy
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from .errors import PacketDecodeError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "JSURL",
    "JSError",
    "JSMap",
    "JSRegExp",
    "JSSet",
    "parse",
    "parse_as_json",
    "stringify",
]

#: Maximum nesting of annotation trees, meta paths and encoded values.
DEFAULT_MAX_DEPTH = 512

#: Largest integer that a JavaScript number represents exactly. Larger ints
#: are written as BigInt.
MAX_SAFE_INTEGER = 2**53 - 1

# Maximum length of a meta path quoted in an error message.
_PATH_QUOTE_LIMIT = 60

_REGEXP_FLAG_ORDER = "dgimsuvy"


@dataclass(frozen=True)
class JSRegExp:
    """A JavaScript regular expression, kept as its source and flags because
    JavaScript and Python regular expression syntax differ.

    ``str()`` gives the literal form, ``/source/flags``.
    """

    source: str
    flags: str = ""

    def __str__(self) -> str:
        return f"/{self.source}/{self.flags}"

    def to_pattern(self) -> re.Pattern[str]:
        """Compile the expression with :mod:`re`, mapping the ``i``, ``m``
        and ``s`` flags.

        :raises re.error: the source uses syntax that :mod:`re` does not
            accept, such as ``\\p{L}``.
        """
        flags = 0
        if "i" in self.flags:
            flags |= re.IGNORECASE
        if "m" in self.flags:
            flags |= re.MULTILINE
        if "s" in self.flags:
            flags |= re.DOTALL
        return re.compile(self.source, flags)


@dataclass(frozen=True)
class JSError:
    """A JavaScript ``Error`` as superjson stores it.

    superjson keeps only the name and the message (custom properties and the
    class are lost). superjson 2.2.7 and later also keep ``cause``; it is
    ``None`` when the packet has none.
    """

    name: str = "Error"
    message: str = ""
    cause: Any = None


class JSURL(str):
    """A JavaScript ``URL``: the ``href`` string, typed so that
    :func:`stringify` writes it back as a URL."""

    __slots__ = ()

    @property
    def href(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"JSURL({str.__repr__(self)})"


class JSMap(list[tuple[Any, Any]]):
    """A JavaScript ``Map`` that cannot be a :class:`dict`: a list of
    ``(key, value)`` pairs in insertion order.

    Decoding gives one when a key is unhashable (an object or array key) or
    when two keys would collide in Python (``1`` and ``true``).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"JSMap({list.__repr__(self)})"


class JSSet(list[Any]):
    """A JavaScript ``Set`` that cannot be a :class:`set`: its members in
    insertion order.

    Decoding gives one when a member is unhashable (an object or array) or
    when two members would collide in Python.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"JSSet({list.__repr__(self)})"


# Marks a value decoded from an ``undefined`` annotation: the key is removed
# from an object and the value becomes None anywhere else.
_UNDEFINED: Any = object()


def _fail(reason: str) -> PacketDecodeError:
    return PacketDecodeError(f"Invalid superjson: {reason}")


def _quote_path(path: list[str]) -> str:
    text = ".".join(path)
    if len(text) > _PATH_QUOTE_LIMIT:
        text = text[:_PATH_QUOTE_LIMIT] + "..."
    return repr(text)


# -- reading the document ---------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_document(text: str | bytes, max_depth: int) -> tuple[Any, Any, Any, bool]:
    """Parse the JSON text and split it into ``json``, ``meta.values``,
    ``meta.referentialEqualities`` and whether paths use the escaping of
    ``meta.v`` 1 and later."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"the text is not valid UTF-8 (byte {exc.start}).") from None
    if text.startswith("\ufeff"):
        text = text[1:]

    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"the text is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
        ) from None
    except ValueError as exc:
        raise _fail(f"the text is not valid JSON ({exc}).") from None
    except RecursionError:
        raise _fail("the JSON is nested too deeply to decode.") from None

    if not isinstance(document, dict) or "json" not in document:
        raise _fail('expected a JSON object with a "json" key.')

    meta = document.get("meta")
    if meta is None:
        return document["json"], None, None, False
    if not isinstance(meta, dict):
        raise _fail('"meta" must be an object.')

    version = meta.get("v")
    escaped = isinstance(version, int) and not isinstance(version, bool) and version >= 1
    return document["json"], meta.get("values"), meta.get("referentialEqualities"), escaped


def _parse_path(text: Any, escaped: bool, max_depth: int) -> list[str]:
    """Split a meta path into keys.

    Without ``meta.v`` (superjson 2.2.1 and older) only ``\\.`` is an escape,
    for a dot inside a key. From ``meta.v`` 1 on, ``\\\\`` is a backslash and
    any other escape is invalid.
    """
    if not isinstance(text, str):
        raise _fail(f"a meta path must be a string, not {type(text).__name__}.")
    if "\\" not in text:
        keys = text.split(".")
    else:
        keys = []
        key: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            following = text[i + 1] if i + 1 < len(text) else ""
            if char == "\\" and following == ".":
                key.append(".")
                i += 2
                continue
            if char == "\\" and escaped:
                if following == "\\":
                    key.append("\\")
                    i += 2
                    continue
                if following != "$":
                    raise _fail(f"the meta path {_quote_path([text])} has an invalid escape.")
            if char == ".":
                keys.append("".join(key))
                key = []
            else:
                key.append(char)
            i += 1
        keys.append("".join(key))
        if escaped:
            keys = [k[1:] if k.startswith("\\$") else k for k in keys]

    if len(keys) > max_depth:
        raise _fail(f"a meta path has more than {max_depth} keys.")
    return keys


def _collect_annotations(values: Any, escaped: bool, max_depth: int) -> list[tuple[list[str], Any]]:
    """Flatten ``meta.values`` into ``(path, type)`` pairs, children before
    their parent, in the order superjson applies them."""
    result: list[tuple[list[str], Any]] = []

    def visit(tree: Any, origin: list[str], depth: int) -> None:
        if depth > max_depth:
            raise _fail(f"the annotations are nested more than {max_depth} levels deep.")
        if isinstance(tree, dict):
            for key, subtree in tree.items():
                visit(subtree, origin + _parse_path(key, escaped, max_depth), depth + 1)
            return
        if not isinstance(tree, list) or not 1 <= len(tree) <= 2:
            raise _fail(
                f"the annotation at {_quote_path(origin)} is not a list of a type and its children."
            )
        if len(tree) == 2 and tree[1] is not None:
            children = tree[1]
            if not isinstance(children, dict):
                raise _fail(
                    f"the children of the annotation at {_quote_path(origin)} must be an object."
                )
            for key, subtree in children.items():
                visit(subtree, origin + _parse_path(key, escaped, max_depth), depth + 1)
        if len(origin) > max_depth:
            raise _fail(f"a meta path has more than {max_depth} keys.")
        result.append((origin, tree[0]))

    if values is not None:
        visit(values, [], 0)
    return result


def _parse_equalities(
    refs: Any, escaped: bool, max_depth: int
) -> tuple[list[list[str]], list[tuple[list[str], list[list[str]]]]]:
    """Split ``meta.referentialEqualities`` into the paths that hold the root
    itself and ``(representative, identical paths)`` pairs."""
    root_paths: list[list[str]] = []
    groups: list[tuple[list[str], list[list[str]]]] = []
    if refs is None:
        return root_paths, groups

    def parse_group(mapping: Any) -> None:
        if not isinstance(mapping, dict):
            raise _fail("referentialEqualities must map a path to a list of paths.")
        for representative, identical in mapping.items():
            if not isinstance(identical, list):
                raise _fail("referentialEqualities must map a path to a list of paths.")
            groups.append(
                (
                    _parse_path(representative, escaped, max_depth),
                    [_parse_path(path, escaped, max_depth) for path in identical],
                )
            )

    if isinstance(refs, list):
        if not 1 <= len(refs) <= 2 or not isinstance(refs[0], list):
            raise _fail(
                "referentialEqualities in list form must be [root paths] "
                "or [root paths, other paths]."
            )
        root_paths = [_parse_path(path, escaped, max_depth) for path in refs[0]]
        if len(refs) == 2 and refs[1] is not None:
            parse_group(refs[1])
    else:
        parse_group(refs)
    return root_paths, groups


def _index(key: str) -> int | None:
    if key.isdigit() and key.isascii():
        return int(key)
    return None


# -- JavaScript conversions -------------------------------------------------

_JS_NUMBER_RE = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_RADIX_RE = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_JS_BIGINT_RE = re.compile(r"[+-]?\d+")
_JS_WHITESPACE = (
    " \t\n\v\f\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _js_number(value: Any) -> float:
    """Convert like JavaScript's ``Number(value)`` for JSON values."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip(_JS_WHITESPACE)
        if not text:
            return 0.0
        if _JS_NUMBER_RE.fullmatch(text):
            return float(text.replace("Infinity", "inf"))
        if _JS_RADIX_RE.fullmatch(text):
            return float(int(text, 0))
        return math.nan
    if isinstance(value, list) and len(value) <= 1:
        return _js_number(value[0]) if value else 0.0
    return math.nan


def _js_bigint(value: Any, path: list[str]) -> int:
    """Convert like JavaScript's ``BigInt(value)``."""
    if type(value) is str and value.isdigit() and value.isascii() and len(value) < 4000:
        return int(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip(_JS_WHITESPACE)
        try:
            if not text:
                return 0
            if _JS_BIGINT_RE.fullmatch(text):
                return int(text)
            if _JS_RADIX_RE.fullmatch(text):
                return int(text, 0)
        except ValueError:
            # Python refuses to convert integers of more than 4300 digits.
            raise _fail(
                f"the BigInt at {_quote_path(path)} has too many digits to convert."
            ) from None
    raise _fail(f"the value at {_quote_path(path)} is annotated as a BigInt but is not an integer.")


def _js_string(value: Any) -> str:
    """Convert like JavaScript's ``String(value)`` for JSON values."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return ",".join("" if item is None else _js_string(item) for item in value)
    return "[object Object]"


_DATE_RE = re.compile(
    r"(?P<year>[+-]\d{6}|\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<offset>Z|[+-]\d{2}:\d{2})?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _is_canonical_date(text: str) -> bool:
    # The exact output of Date.prototype.toISOString for years 0000-9999,
    # which is what superjson writes.
    return len(text) == 24 and text[10] == "T" and text[23] == "Z" and text[19] == "."


def _js_date(value: Any) -> datetime | str | None:
    """Convert a Date placeholder to an aware datetime in UTC.

    Returns None for an invalid Date and the string itself for a valid Date
    outside the years 1-9999 that :class:`datetime` supports.
    """
    if isinstance(value, str):
        if _is_canonical_date(value):
            try:
                return datetime.fromisoformat(value[:23] + "+00:00")
            except ValueError:
                pass  # Year 0000 or an invalid day: the general parser decides.
        match = _DATE_RE.fullmatch(value)
        if match is None:
            return None
        parts = match.groupdict()
        year = int(parts["year"])
        if parts["year"] == "-000000":
            return None
        try:
            fraction = (parts["fraction"] or "0")[:3].ljust(3, "0")
            offset = timedelta()
            if parts["offset"] and parts["offset"] != "Z":
                sign = -1 if parts["offset"][0] == "-" else 1
                offset = sign * timedelta(
                    hours=int(parts["offset"][1:3]), minutes=int(parts["offset"][4:6])
                )
            result = datetime(
                year,
                int(parts["month"] or 1),
                int(parts["day"] or 1),
                int(parts["hour"] or 0),
                int(parts["minute"] or 0),
                int(parts["second"] or 0),
                int(fraction) * 1000,
                tzinfo=timezone.utc,
            )
            return result - offset
        except (ValueError, OverflowError):
            if 1 <= year <= 9999 or abs(year) > 275760:
                return None
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > 8.64e15:
            return None
        try:
            return _EPOCH + timedelta(milliseconds=math.trunc(value))
        except OverflowError:
            return None
    return None


def _format_date(value: datetime) -> str:
    text = value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text[:-6] + "Z"


def _date_as_json(value: Any) -> Any:
    decoded = _js_date(value)
    if isinstance(decoded, datetime):
        if isinstance(value, str) and _is_canonical_date(value):
            return value
        return _format_date(decoded)
    return decoded


def _regexp(value: Any, path: list[str]) -> JSRegExp:
    if not isinstance(value, str) or not value.startswith("/") or value.rfind("/") == 0:
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a RegExp but is not /source/flags."
        )
    end = value.rfind("/")
    flags = value[end + 1 :]
    if any(flag not in _REGEXP_FLAG_ORDER for flag in flags) or len(set(flags)) != len(flags):
        raise _fail(f"the RegExp at {_quote_path(path)} has invalid flags {flags!r}.")
    if "u" in flags and "v" in flags:
        raise _fail(f"the RegExp at {_quote_path(path)} has both the u and v flags.")
    flags = "".join(flag for flag in _REGEXP_FLAG_ORDER if flag in flags)
    return JSRegExp(_escape_regexp_source(value[1:end]), flags)


def _escape_regexp_source(body: str) -> str:
    """Escape a pattern the way JavaScript's ``RegExp.prototype.source``
    does: a slash outside a character class and line terminators."""
    if not body:
        return "(?:)"
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            out.append(body[i : i + 2])
            i += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "/" and not in_class:
            char = "\\/"
        elif char == "\n":
            char = "\\n"
        elif char == "\r":
            char = "\\r"
        elif char in "\u2028\u2029":
            char = f"\\u{ord(char):04x}"
        out.append(char)
        i += 1
    return "".join(out)


# name: (array typecode, bits of an integer element or 0 for a float, signed)
_TYPED_ARRAYS: dict[str, tuple[str, int, bool]] = {
    "Int8Array": ("b", 8, True),
    "Uint8Array": ("B", 8, False),
    "Uint8ClampedArray": ("B", 8, False),
    "Int16Array": ("h", 16, True),
    "Uint16Array": ("H", 16, False),
    "Int32Array": ("i", 32, True),
    "Uint32Array": ("I", 32, False),
    "Float32Array": ("f", 0, True),
    "Float64Array": ("d", 0, True),
    "BigInt64Array": ("q", 64, True),
    "BigUint64Array": ("Q", 64, False),
}
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


def _wrap_integer(number: int, bits: int, signed: bool) -> int:
    number %= 1 << bits
    if signed and number >= 1 << (bits - 1):
        number -= 1 << bits
    return number


def _typed_array(value: Any, name: str, path: list[str]) -> array.array[Any]:
    """Build the typed array ``new <name>(value)`` would give."""
    if name not in _TYPED_ARRAYS:
        raise _fail(f"the value at {_quote_path(path)} has the unknown typed array type {name!r}.")
    if not isinstance(value, list):
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a {name} but is not an array."
        )
    typecode, bits, signed = _TYPED_ARRAYS[name]
    if bits == 64:
        items: list[Any] = [_wrap_integer(_js_bigint(item, path), 64, signed) for item in value]
    elif bits == 0:
        items = [_js_number(item) for item in value]
    elif name == "Uint8ClampedArray":
        items = []
        for item in value:
            number = _js_number(item)
            items.append(0 if math.isnan(number) else round(min(max(number, 0.0), 255.0)))
    else:
        items = []
        for item in value:
            number = _js_number(item)
            items.append(
                _wrap_integer(math.trunc(number), bits, signed) if math.isfinite(number) else 0
            )
    return array.array(typecode, items)


def _number_as_json(number: float) -> Any:
    """Return a JavaScript number as ``JSON.stringify`` writes it: None for
    NaN and infinities, an int for a whole number."""
    if not math.isfinite(number):
        return None
    if number.is_integer():
        return int(number)
    return number


def _buffer(value: Any, path: list[str]) -> bytes:
    if not isinstance(value, list):
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a buffer "
            "but is not an array of bytes."
        )
    result = bytearray()
    for item in value:
        number = _js_number(item)
        result.append(_wrap_integer(math.trunc(number), 8, False) if math.isfinite(number) else 0)
    return bytes(result)


def _error_fields(value: Any, path: list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as an Error but is not an object."
        )
    return value


def _check_url(value: Any, path: list[str]) -> str:
    if not isinstance(value, str) or not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", value):
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a URL but is not an absolute URL."
        )
    return value


def _annotation_name(annotation: Any, path: list[str]) -> tuple[str, str | None]:
    if isinstance(annotation, str):
        return annotation, None
    if (
        isinstance(annotation, list)
        and len(annotation) == 2
        and all(isinstance(part, str) for part in annotation)
    ):
        return annotation[0], annotation[1]
    raise _fail(f"the annotation at {_quote_path(path)} is not a type name.")


def _unknown(annotation: Any, path: list[str]) -> PacketDecodeError:
    annotation_text = json.dumps(annotation)[:40]
    return _fail(f"the annotation at {_quote_path(path)} has the unknown type {annotation_text}.")


def _to_typed(value: Any, annotation: Any, path: list[str]) -> Any:
    """Convert a placeholder to its typed Python value."""
    kind, detail = _annotation_name(annotation, path)
    if detail is None:
        if kind == "Date":
            return _js_date(value)
        if kind == "bigint":
            return _js_bigint(value, path)
        if kind == "undefined":
            return _UNDEFINED
        if kind == "number":
            return _js_number(value)
        if kind == "set":
            return _make_set(value, path)
        if kind == "map":
            return _make_map(value, path)
        if kind == "regexp":
            return _regexp(value, path)
        if kind == "Error":
            fields = _error_fields(value, path)
            name = fields.get("name")
            message = fields.get("message")
            return JSError(
                name if isinstance(name, str) else ("Error" if name is None else _js_string(name)),
                "" if message is None else _js_string(message),
                fields.get("cause"),
            )
        if kind == "URL":
            return JSURL(_check_url(value, path))
    elif kind == "custom" and detail == "buffer":
        return _buffer(value, path)
    elif kind == "typed-array":
        return _typed_array(value, detail, path)
    elif kind == "class":
        if isinstance(value, dict):
            return value
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a class instance "
            "but is not an object."
        )
    raise _unknown(annotation, path)


def _to_json(value: Any, annotation: Any, path: list[str]) -> Any:
    """Convert a placeholder to what re-serializing its decoded value gives,
    as Trigger.dev's ``parsePacketAsJson`` does."""
    kind, detail = _annotation_name(annotation, path)
    if detail is None:
        if kind == "Date":
            return _date_as_json(value)
        if kind == "bigint":
            return str(_js_bigint(value, path))
        if kind == "undefined":
            return None
        if kind == "number":
            number = _js_number(value)
            if math.isnan(number):
                return "NaN"
            if math.isinf(number):
                return "Infinity" if number > 0 else "-Infinity"
            if number == 0 and math.copysign(1.0, number) < 0:
                return "-0"
            return _number_as_json(number)
        if kind == "set":
            if not isinstance(value, list):
                raise _fail(
                    f"the value at {_quote_path(path)} is annotated as a Set but is not an array."
                )
            return value
        if kind == "map":
            return [list(pair) for pair in _map_pairs(value, path)]
        if kind == "regexp":
            return str(_regexp(value, path))
        if kind == "Error":
            fields = _error_fields(value, path)
            result: dict[str, Any] = {}
            if "name" in fields:
                result["name"] = fields["name"]
            message = fields.get("message")
            result["message"] = "" if message is None else _js_string(message)
            return result
        if kind == "URL":
            return _check_url(value, path)
    elif kind == "custom" and detail == "buffer":
        return list(_buffer(value, path))
    elif kind == "typed-array":
        typed = _typed_array(value, detail, path)
        if typed.typecode in "fd":
            return [_number_as_json(item) for item in typed]
        if typed.typecode in "qQ":
            return [str(item) for item in typed]
        return typed.tolist()
    elif kind == "class":
        if isinstance(value, dict):
            return value
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a class instance "
            "but is not an object."
        )
    raise _unknown(annotation, path)


def _undefined_to_none(value: Any) -> Any:
    return None if value is _UNDEFINED else value


def _map_pairs(value: Any, path: list[str]) -> list[tuple[Any, Any]]:
    if not isinstance(value, list):
        raise _fail(
            f"the value at {_quote_path(path)} is annotated as a Map "
            "but is not an array of entries."
        )
    pairs = []
    for entry in value:
        if not isinstance(entry, list):
            raise _fail(
                f"the Map at {_quote_path(path)} has an entry that is not a [key, value] array."
            )
        key = entry[0] if entry else None
        item = entry[1] if len(entry) > 1 else None
        pairs.append((_undefined_to_none(key), _undefined_to_none(item)))
    return pairs


def _make_map(value: Any, path: list[str]) -> dict[Any, Any] | JSMap:
    pairs = _map_pairs(value, path)
    try:
        result = dict(pairs)
    except TypeError:
        return JSMap(pairs)
    if len(result) != len(pairs):
        return JSMap(pairs)
    return result


def _make_set(value: Any, path: list[str]) -> set[Any] | JSSet:
    if not isinstance(value, list):
        raise _fail(f"the value at {_quote_path(path)} is annotated as a Set but is not an array.")
    members = [_undefined_to_none(member) for member in value]
    try:
        result = set(members)
    except TypeError:
        return JSSet(members)
    if len(result) != len(members):
        return JSSet(members)
    return result


def _convert_named(
    convert: Callable[[Any, Any, list[str]], Any], name: str, value: Any, path: list[str]
) -> Any:
    return convert(value, name, path)


# Converters for a type given as a plain name, by name: (value, path) -> value.
_SIMPLE_NAMES = ("Date", "bigint", "undefined", "number", "set", "map", "regexp", "Error", "URL")
_SIMPLE_TYPED: dict[str, Callable[[Any, list[str]], Any]] = {
    name: partial(_convert_named, _to_typed, name) for name in _SIMPLE_NAMES
}
_SIMPLE_TYPED.update(
    {
        "Date": lambda value, path: _js_date(value),
        "bigint": _js_bigint,
        "undefined": lambda value, path: _UNDEFINED,
        "number": lambda value, path: _js_number(value),
        "set": _make_set,
        "map": _make_map,
    }
)
_SIMPLE_JSON: dict[str, Callable[[Any, list[str]], Any]] = {
    name: partial(_convert_named, _to_json, name) for name in _SIMPLE_NAMES
}
_SIMPLE_JSON.update(
    {
        "Date": lambda value, path: _date_as_json(value),
        "undefined": lambda value, path: None,
    }
)


# -- applying annotations ---------------------------------------------------

_MISSING: Any = object()


class _Applier:
    """Replace placeholders at annotated paths, and apply referential
    equalities, in place on the parsed ``json`` half."""

    def __init__(self, convert: Callable[[Any, Any, list[str]], Any], typed: bool) -> None:
        self.convert = convert
        self.typed = typed
        # Containers decoded from a Map or a Set, by id, so that a path can
        # step into them by position the way superjson does:
        # id -> (container, ordered keys or members, or None for a JSMap).
        self.collections: dict[int, tuple[Any, list[Any] | None]] = {}
        self.track_collections = False

    def locate(self, root: Any, path: list[str]) -> tuple[Any, Any] | None:
        """Return the container and the slot holding the value at ``path``,
        or None when the path does not exist."""
        container: Any = None
        slot: Any = None
        current = root
        i = 0
        count = len(path)
        collections = self.collections
        while i < count:
            key = path[i]
            if collections and id(current) in collections:
                order = collections[id(current)][1]
                row = _index(key)
                if row is None:
                    return None
                if isinstance(current, set):
                    if order is None or row >= len(order):
                        return None
                    slot = ("set", row)
                else:
                    if i + 1 >= count:
                        return None
                    part = path[i + 1]
                    size = len(current) if order is None else len(order)
                    if part not in ("0", "1") or row >= size:
                        return None
                    slot = ("map", row, part == "0")
                    i += 1
            elif type(current) is list or type(current) is JSSet:
                row = _index(key)
                if row is None or row >= len(current):
                    return None
                slot = row
            elif type(current) is dict:
                if key not in current:
                    return None
                slot = key
            else:
                return None
            container = current
            current = self.read(container, slot)
            i += 1
        return container, slot

    def read(self, container: Any, slot: Any) -> Any:
        if type(slot) is not tuple:
            return container[slot]
        order = self.collections[id(container)][1]
        if slot[0] == "set":
            return order[slot[1]]  # type: ignore[index]
        _, row, is_key = slot
        if order is None:
            return container[row][0 if is_key else 1]
        key = order[row]
        return key if is_key else container[key]

    def write(self, container: Any, slot: Any, value: Any) -> None:
        if type(slot) is not tuple:
            if value is _UNDEFINED:
                if type(container) is dict:
                    del container[slot]
                    return
                value = None
            container[slot] = value
            return

        value = _undefined_to_none(value)
        order = self.collections[id(container)][1]
        if slot[0] == "set":
            old = order[slot[1]]  # type: ignore[index]
            try:
                container.discard(old)
                container.add(value)
            except TypeError:
                raise _fail("a referential equality puts an unhashable value into a Set.") from None
            order[slot[1]] = value  # type: ignore[index]
            return
        _, row, is_key = slot
        if order is None:
            key, item = container[row]
            container[row] = (value, item) if is_key else (key, value)
        elif not is_key:
            container[order[row]] = value
        else:
            items = list(container.items())
            try:
                items[row] = (value, items[row][1])
                rebuilt = dict(items)
            except TypeError:
                raise _fail("a referential equality puts an unhashable key into a Map.") from None
            container.clear()
            container.update(rebuilt)
            order[row] = value

    def remember(self, value: Any) -> None:
        if not self.track_collections:
            return
        if isinstance(value, dict):
            self.collections[id(value)] = (value, list(value))
        elif isinstance(value, JSMap):
            self.collections[id(value)] = (value, None)
        elif isinstance(value, set):
            self.collections[id(value)] = (value, list(value))

    def apply_values(self, root: Any, annotations: list[tuple[list[str], Any]]) -> Any:
        convert = self.convert
        for path, annotation in annotations:
            if not path:
                root = convert(root, annotation, path)
                if self.typed and annotation in ("map", "set"):
                    self.remember(root)
                continue
            location = self.locate(root, path)
            if location is None:
                # superjson 2.2.1 skips paths that do not exist too; it
                # writes such paths for keys that contain a dot.
                continue
            container, slot = location
            converted = convert(self.read(container, slot), annotation, path)
            if self.typed and annotation in ("map", "set"):
                self.remember(converted)
            self.write(container, slot, converted)
        return _undefined_to_none(root)

    def apply_flat(self, root: Any, values: dict[str, Any], escaped: bool, max_depth: int) -> Any:
        """Apply ``meta.values`` in its object form entry by entry.

        Most entries are one type at a path without escapes, as in
        ``{"pages.0.fetchedAt": ["Date"]}``. Such entries take a shortcut
        that skips the general path parser and tree walk.
        """
        simple = _SIMPLE_TYPED if self.typed else _SIMPLE_JSON
        for key, tree in values.items():
            converter = None
            if type(tree) is list and len(tree) == 1 and type(key) is str and "\\" not in key:
                annotation = tree[0]
                if type(annotation) is str:
                    converter = simple.get(annotation)
            if converter is None:
                root = self.apply_values(
                    root, _collect_annotations({key: tree}, escaped, max_depth)
                )
                continue

            keys = key.split(".")
            if len(keys) > max_depth:
                raise _fail(f"a meta path has more than {max_depth} keys.")

            # Find the container and slot of the path through objects and
            # arrays; a path that does not exist is skipped, as in
            # apply_values.
            container = root
            slot: Any = _MISSING
            for step in keys:
                if slot is not _MISSING:
                    container = container[slot]
                kind = type(container)
                if kind is dict:
                    slot = step if step in container else _MISSING
                elif (kind is list or kind is JSSet) and step.isdigit() and step.isascii():
                    slot = int(step)
                    if slot >= len(container):
                        slot = _MISSING
                else:
                    slot = _MISSING
                if slot is _MISSING:
                    break
            if slot is _MISSING:
                continue

            converted = converter(container[slot], keys)
            if converted is _UNDEFINED:
                if type(container) is dict:
                    del container[slot]
                    continue
                converted = None
            elif self.track_collections and annotation in ("map", "set"):
                self.remember(converted)
            container[slot] = converted
        return root

    def apply_equalities(
        self,
        root: Any,
        root_paths: list[list[str]],
        groups: list[tuple[list[str], list[list[str]]]],
    ) -> Any:
        if self.typed:
            for path in root_paths:
                location = self.locate(root, path)
                if location is not None:
                    self.write(*location, root)
        for representative, identical in groups:
            if representative:
                location = self.locate(root, representative)
                if location is None:
                    continue
                shared = self.read(*location)
            else:
                shared = root
            for path in identical:
                if not self.typed and path[: len(representative)] == representative:
                    # A cycle stays null in the JSON form.
                    continue
                target = self.locate(root, path)
                if target is None:
                    continue
                if self.typed:
                    self.write(*target, shared)
                elif self.read(*target) is None:
                    # A copy keeps the JSON form a tree, so that it can be
                    # written as JSON even when the equalities overlap.
                    self.write(*target, copy.deepcopy(shared))
        return root


def parse(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a superjson document to typed Python values.

    Dates become aware datetimes, BigInts ints, Maps dicts (or
    :class:`JSMap`), Sets sets (or :class:`JSSet`), and shared references
    become the same Python object, cycles included. docs/decoding.md has the
    complete table.

    :param text: the document, as text or UTF-8 bytes. A leading byte order
        mark is ignored.
    :param max_depth: the deepest annotation tree and longest meta path
        accepted.
    :raises PacketDecodeError: the text is not JSON, not a superjson
        document, or its meta is malformed or names an unknown type.
    """
    return _decode(text, max_depth, typed=True)


def parse_as_json(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a superjson document to its JSON form, the value Trigger.dev's
    API returns for the same output stored inline.

    Dates are ISO-8601 strings, BigInts decimal strings, Maps lists of
    ``[key, value]`` pairs, Sets lists, ``undefined`` None, NaN and the
    infinities the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``,
    RegExps ``"/source/flags"`` and Errors ``{"name", "message"}``. A shared
    object appears once per reference and a cycle is None. The result
    contains only JSON types.

    :param text: the document, as text or UTF-8 bytes.
    :param max_depth: the deepest annotation tree and longest meta path
        accepted.
    :raises PacketDecodeError: as :func:`parse`.
    """
    return _decode(text, max_depth, typed=False)


def _decode(text: str | bytes, max_depth: int, *, typed: bool) -> Any:
    value, values, refs, escaped = _load_document(text, max_depth)
    try:
        root_paths, groups = _parse_equalities(refs, escaped, max_depth)
        applier = _Applier(_to_typed if typed else _to_json, typed=typed)
        applier.track_collections = typed and bool(root_paths or groups)
        if isinstance(values, dict):
            value = applier.apply_flat(value, values, escaped, max_depth)
        else:
            annotations = _collect_annotations(values, escaped, max_depth)
            value = applier.apply_values(value, annotations)
        if groups or (typed and root_paths):
            value = applier.apply_equalities(value, root_paths, groups)
    except RecursionError:
        # Only reachable when the caller's own stack is already deep.
        raise _fail("the meta is nested too deeply to decode.") from None
    return value


# -- writing ----------------------------------------------------------------

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
