"""Convert superjson placeholders to Python values, or to the JSON form
that Trigger.dev's ``parsePacketAsJson`` gives, the way JavaScript converts
the same values."""

from __future__ import annotations

import array
import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from ..errors import PacketDecodeError
from .document import _fail, _quote_path
from .types import JSURL, JSError, JSMap, JSRegExp, JSSet

_REGEXP_FLAG_ORDER = "dgimsuvy"

# Marks a value decoded from an ``undefined`` annotation: the key is removed
# from an object and the value becomes None anywhere else.
_UNDEFINED: Any = object()

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
            if name is None:
                name = "Error"
            elif not isinstance(name, str):
                name = _js_string(name)
            return JSError(
                name,
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
