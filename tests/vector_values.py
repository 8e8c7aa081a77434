"""Turn the type-tagged values of the packet vectors into the Python values
the decoder returns, and compare decoded values strictly.

The vectors write JavaScript values with ``{"$type": ...}`` tags (a Date is
``{"$type": "date", "iso": ...}``); :func:`from_tagged` applies the mapping
documented in docs/decoding.md, and :func:`assert_same` compares types as
well as values. It treats NaN as equal to NaN, distinguishes 0.0 from -0.0
and follows cycles.
"""

from __future__ import annotations

import array
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from flask_trigger_outputs.superjson import JSURL, JSError, JSMap, JSRegExp, JSSet

_TYPECODES = {
    "Int8Array": "b",
    "Uint8Array": "B",
    "Uint8ClampedArray": "B",
    "Int16Array": "h",
    "Uint16Array": "H",
    "Int32Array": "i",
    "Uint32Array": "I",
    "Float32Array": "f",
    "Float64Array": "d",
    "BigInt64Array": "q",
    "BigUint64Array": "Q",
}

_ABSENT = object()


class UnrepresentableError(Exception):
    """The tagged value contains something that has no Python counterpart in
    the mapping (a function, a symbol, a class instance, a hole, an Error's
    custom properties)."""


def load_case(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as file:
        case: dict[str, Any] = json.load(file)
    return case


def from_tagged(tagged: Any) -> Any:
    """Build the decoded Python value for a tagged value, resolving
    ``circular`` tags to the object at their target path."""
    circular: list[tuple[Any, Any, list[Any]]] = []
    root = _plain(_convert(tagged, circular))
    for container, key, target in circular:
        container[key] = resolve(root, target)
    return root


def _convert(node: Any, circular: list[tuple[Any, Any, list[Any]]]) -> Any:
    if isinstance(node, list):
        items = []
        for index, item in enumerate(node):
            value = _convert(item, circular)
            items.append(None if value is _ABSENT else value)
            if _is_circular(item):
                circular.append((items, index, item["target"]))
        return items
    if not isinstance(node, dict):
        return node
    if "$type" not in node:
        result: dict[str, Any] = {}
        for key, item in node.items():
            value = _convert(item, circular)
            if value is not _ABSENT:
                result[key] = value
            if _is_circular(item):
                circular.append((result, key, item["target"]))
        return result

    tag = node["$type"]
    if tag == "undefined":
        return _ABSENT
    if tag == "circular":
        return None
    if tag == "number":
        return float(node["value"].replace("Infinity", "inf"))
    if tag == "bigint":
        return int(node["value"])
    if tag == "date":
        if node.get("invalid"):
            return None
        return datetime.fromisoformat(node["iso"].replace("Z", "+00:00"))
    if tag == "regexp":
        return JSRegExp(node["source"], node["flags"])
    if tag == "error":
        if "props" in node or node.get("class", "Error") != "Error":
            raise UnrepresentableError("an Error subclass or custom properties")
        cause = node.get("cause")
        return JSError(
            node["name"], node["message"], None if cause is None else _convert(cause, circular)
        )
    if tag == "url":
        return JSURL(node["href"])
    if tag == "map":
        pairs = [
            (_plain(_convert(k, circular)), _plain(_convert(v, circular)))
            for k, v in node["entries"]
        ]
        try:
            as_dict = dict(pairs)
        except TypeError:
            return JSMap(pairs)
        return as_dict if len(as_dict) == len(pairs) else JSMap(pairs)
    if tag == "set":
        members = [_plain(_convert(item, circular)) for item in node["values"]]
        try:
            as_set = set(members)
        except TypeError:
            return JSSet(members)
        return as_set if len(as_set) == len(members) else JSSet(members)
    if tag == "buffer":
        return bytes(node["bytes"])
    if tag == "typed-array":
        values = [_plain(_convert(item, circular)) for item in node["values"]]
        return array.array(_TYPECODES[node["class"]], values)
    if tag == "object":
        return {key: _plain(_convert(item, circular)) for key, item in node["value"].items()}
    raise UnrepresentableError(f"the tag {tag!r}")


def _plain(value: Any) -> Any:
    return None if value is _ABSENT else value


def _is_circular(node: Any) -> bool:
    return isinstance(node, dict) and node.get("$type") == "circular"


def is_representable(tagged: Any) -> bool:
    try:
        from_tagged(tagged)
    except UnrepresentableError:
        return False
    return True


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Assert that two decoded values are equal with the same types."""
    _compare(actual, expected, path, set())


def _compare(actual: Any, expected: Any, path: str, seen: set[tuple[int, int]]) -> None:
    assert type(actual) is type(expected), (
        f"{path}: {type(actual).__name__} != {type(expected).__name__}"
    )
    if isinstance(expected, float):
        if math.isnan(expected):
            assert math.isnan(actual), f"{path}: {actual!r} is not NaN"
        else:
            assert actual == expected, f"{path}: {actual!r} != {expected!r}"
            assert math.copysign(1, actual) == math.copysign(1, expected), (
                f"{path}: sign of zero differs"
            )
        return
    if isinstance(expected, (dict, list, JSError, array.array)):
        pair = (id(actual), id(expected))
        if pair in seen:
            return
        seen.add(pair)
    if isinstance(expected, dict):
        assert list(actual) == list(expected), (
            f"{path}: keys {list(actual)!r} != {list(expected)!r}"
        )
        for key in expected:
            _compare(actual[key], expected[key], f"{path}.{key}", seen)
    elif isinstance(expected, (list, tuple, array.array)):
        if isinstance(expected, array.array):
            assert actual.typecode == expected.typecode, f"{path}: typecode differs"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for index, (left, right) in enumerate(zip(actual, expected, strict=True)):
            _compare(left, right, f"{path}[{index}]", seen)
    elif isinstance(expected, JSError):
        assert (actual.name, actual.message) == (expected.name, expected.message), path
        _compare(actual.cause, expected.cause, f"{path}.cause", seen)
    elif isinstance(expected, set):
        assert len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        nan_count = sum(1 for item in expected if isinstance(item, float) and math.isnan(item))
        assert (
            sum(1 for item in actual if isinstance(item, float) and math.isnan(item)) == nan_count
        )
        assert {item for item in actual if not _is_nan(item)} == {
            item for item in expected if not _is_nan(item)
        }, f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def resolve(value: Any, path: list[Any]) -> Any:
    for step in path:
        value = value[step]
    return value
