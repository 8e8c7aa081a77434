"""Tests for the superjson decoder and encoder, driven by the packets the
official Trigger.dev serializer wrote (the ``vectors_dir`` fixture)."""

from __future__ import annotations

import array
import contextlib
import json
import math
import string
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import VECTORS_DIR
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vector_values import assert_same, from_tagged, is_representable, load_case, resolve

from flask_trigger_outputs import superjson
from flask_trigger_outputs.errors import PacketDecodeError
from flask_trigger_outputs.superjson import JSURL, JSError, JSMap, JSRegExp, JSSet

SUPERJSON = "application/super+json"


def _superjson_case_names() -> list[str]:
    names = []
    for path in sorted((VECTORS_DIR / "cases").glob("*.json")):
        packet = load_case(path).get("packet") or {}
        if packet.get("dataType") == SUPERJSON and isinstance(packet.get("data"), str):
            names.append(path.stem)
    return names


CASE_NAMES = _superjson_case_names()

# superjson 2.2.7 writes an Error's cause. Trigger.dev's own decoder
# (superjson 2.2.1) drops it, and the recorded typed value with it; this
# decoder keeps it.
TYPED_OVERRIDES: dict[str, Any] = {
    "error_with_cause__superjson_2_2_7": {
        "err": JSError("Error", "outer", JSError("Error", "inner")),
    },
}


@pytest.fixture
def case(request: pytest.FixtureRequest, vectors_dir: Path) -> dict[str, Any]:
    return load_case(vectors_dir / "cases" / f"{request.param}.json")


def test_vectors_found(vectors_dir: Path) -> None:
    # Both serializer versions are present, so no parametrized test below
    # can pass by running zero cases.
    assert len(CASE_NAMES) >= 70
    assert sum(name.endswith("__superjson_2_2_7") for name in CASE_NAMES) >= 30


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_parse_vector_typed(case: dict[str, Any]) -> None:
    expected = TYPED_OVERRIDES.get(case["name"])
    if expected is None:
        expected = from_tagged(case["expected_typed"])

    assert_same(superjson.parse(case["packet"]["data"]), expected)


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_parse_vector_bytes(case: dict[str, Any]) -> None:
    text = case["packet"]["data"]
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        pytest.skip("a lone surrogate has no UTF-8 encoding")
    assert_same(superjson.parse(text.encode()), superjson.parse(text))


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_parse_as_json_vector(case: dict[str, Any]) -> None:
    result = superjson.parse_as_json(case["packet"]["data"])

    assert_same(result, case["expected_as_json"])
    # The JSON form must be writable as JSON as it is.
    assert json.loads(json.dumps(result, allow_nan=False)) == case["expected_as_json"]


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_parse_vector_identity(case: dict[str, Any]) -> None:
    result = superjson.parse(case["packet"]["data"])

    for group in case.get("identity_groups", []):
        first = resolve(result, group[0])
        for path in group[1:]:
            assert resolve(result, path) is first, f"{path} is not the object at {group[0]}"


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_stringify_vector_round_trip(case: dict[str, Any]) -> None:
    source = case["expected_typed"] if case.get("lossless") else case.get("input_typed")
    if source is None or not is_representable(source):
        pytest.skip("the original value has no Python counterpart")
    value = from_tagged(source)

    text = superjson.stringify(value)

    assert_same(superjson.parse(text), value)


def test_stringify_matches_official_packets(vectors_dir: Path) -> None:
    # Where the Python value maps back to one JavaScript value, the text is
    # the official serializer's, byte for byte. It cannot be for a BigInt
    # that fits a JavaScript number (written as a number), a Map with string
    # keys (decoded to a dict, written as an object) and undefined (None,
    # written as null).
    matched = []
    for name in CASE_NAMES:
        if name.endswith("__superjson_2_2_7"):
            continue
        case = load_case(vectors_dir / "cases" / f"{name}.json")
        if not case.get("lossless") or not is_representable(case["expected_typed"]):
            continue
        if superjson.stringify(from_tagged(case["expected_typed"])) == case["packet"]["data"]:
            matched.append(name)

    for name in [
        "bigint_huge",
        "buffer_node",
        "date_as_map_key",
        "date_in_object",
        "error_basic",
        "json_realistic_agent_output",
        "map_object_keys",
        "number_negative_zero",
        "number_special_in_array",
        "ref_cycle_nested",
        "ref_cycle_root",
        "regexp_flags",
        "set_objects",
        "string_lone_surrogate",
        "url_in_object",
        "user_key_dollar_type",
    ]:
        assert name in matched


def test_parse_dotted_keys_legacy_paths_skip() -> None:
    # superjson 2.2.1 writes "a.b" for the key "a.b" and cannot find it
    # again; the value keeps its JSON form, as in Trigger.dev itself.
    text = '{"json":{"a.b":"2024-05-01T00:00:00.000Z"},"meta":{"values":{"a.b":["Date"]}}}'

    assert superjson.parse(text) == {"a.b": "2024-05-01T00:00:00.000Z"}


def test_parse_escaped_dot_without_version() -> None:
    text = '{"json":{"a.b":"5"},"meta":{"values":{"a\\\\.b":["bigint"]}}}'

    assert superjson.parse(text) == {"a.b": 5}


def test_parse_escaped_backslash_with_version() -> None:
    value = {"a\\": {"b": 10**20}, "c\\.d": datetime(2024, 1, 1, tzinfo=timezone.utc)}
    text = superjson.stringify(value)

    assert json.loads(text)["meta"]["v"] == 1
    assert_same(superjson.parse(text), value)


def test_parse_invalid_escape_with_version() -> None:
    text = '{"json":{"a":1},"meta":{"values":{"a\\\\x":["bigint"]},"v":1}}'

    with pytest.raises(PacketDecodeError, match="invalid escape"):
        superjson.parse(text)


def test_parse_dollar_key_with_version() -> None:
    text = '{"json":{"$a":"1"},"meta":{"values":{"\\\\$a":["bigint"]},"v":2}}'

    assert superjson.parse(text) == {"$a": 1}


def test_parse_undefined_removes_key() -> None:
    text = '{"json":{"a":null,"b":1},"meta":{"values":{"a":["undefined"]}}}'

    assert superjson.parse(text) == {"b": 1}
    assert superjson.parse_as_json(text) == {"a": None, "b": 1}


def test_parse_top_level_undefined() -> None:
    assert superjson.parse('{"json":null,"meta":{"values":["undefined"]}}') is None


def test_parse_map_with_colliding_keys() -> None:
    text = '{"json":[[1,"number"],[true,"boolean"]],"meta":{"values":["map"]}}'

    result = superjson.parse(text)

    assert type(result) is JSMap
    assert result == [(1, "number"), (True, "boolean")]


def test_parse_set_with_colliding_members() -> None:
    text = '{"json":[1,true],"meta":{"values":["set"]}}'

    result = superjson.parse(text)

    assert type(result) is JSSet
    assert result == [1, True]


def test_parse_map_string_keys_dict() -> None:
    result = superjson.parse('{"json":[["a",1],["b",2]],"meta":{"values":["map"]}}')

    assert type(result) is dict
    assert result == {"a": 1, "b": 2}


def test_parse_reference_into_map_value() -> None:
    shared = {"shared": True}
    value = {"m": {1: shared}, "again": shared}
    text = superjson.stringify(value)

    result = superjson.parse(text)

    assert json.loads(text)["meta"]["referentialEqualities"] == {"again": ["m.0.1"]}
    assert result["m"][1] is result["again"]


def test_parse_reference_into_set() -> None:
    stamp = datetime(2024, 1, 1, tzinfo=timezone.utc)
    value = {"s": {stamp}, "t": stamp}

    result = superjson.parse(superjson.stringify(value))

    assert result == value
    assert next(iter(result["s"])) is result["t"]


def test_parse_cycle_in_set() -> None:
    outer: list[Any] = []
    members = JSSet([outer])
    outer.append(members)

    result = superjson.parse(superjson.stringify({"s": members}))

    assert result["s"][0][0] is result["s"]


def test_parse_as_json_dedupe_packet() -> None:
    # superjson's dedupe mode writes a shared object once and null
    # elsewhere; the JSON form repeats it as Trigger.dev's server does.
    text = '{"json":{"a":{"k":1},"b":null},"meta":{"referentialEqualities":{"a":["b"]}}}'

    assert superjson.parse_as_json(text) == {"a": {"k": 1}, "b": {"k": 1}}


def test_parse_as_json_overlapping_equalities() -> None:
    # Each path refers to the other's object, which would be a cycle if the
    # JSON form shared objects; it stays a tree that json.dumps accepts.
    document = json.dumps(
        {
            "json": {"a": {"x": 1, "z": None}, "b": {"y": None}},
            "meta": {"referentialEqualities": {"a": ["b.y"], "b": ["a.z"]}},
        }
    )

    result = superjson.parse_as_json(document)
    typed = superjson.parse(document)

    assert json.loads(json.dumps(result)) == {
        "a": {"x": 1, "z": {"y": {"x": 1, "z": None}}},
        "b": {"y": {"x": 1, "z": None}},
    }
    assert typed["b"]["y"] is typed["a"]
    assert typed["a"]["z"] is typed["b"]


def test_parse_dates() -> None:
    cases = {
        "2024-05-01T12:34:56.789Z": datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=timezone.utc),
        "2024-05-01": datetime(2024, 5, 1, tzinfo=timezone.utc),
        "2024-05-01T12:00:00+02:00": datetime(2024, 5, 1, 10, tzinfo=timezone.utc),
        "0001-01-01T00:00:00.000Z": datetime(1, 1, 1, tzinfo=timezone.utc),
    }
    for text, expected in cases.items():
        document = json.dumps({"json": text, "meta": {"values": ["Date"]}})
        result = superjson.parse(document)
        assert result == expected, text
        assert result.utcoffset() == timedelta(0), text


def test_parse_invalid_date_none() -> None:
    for text in ["not a date", "2024-13-01T00:00:00.000Z", ""]:
        document = json.dumps({"json": text, "meta": {"values": ["Date"]}})
        assert superjson.parse(document) is None, text
        assert superjson.parse_as_json(document) is None, text


def test_parse_date_outside_python_range() -> None:
    document = json.dumps({"json": "+010000-01-01T00:00:00.000Z", "meta": {"values": ["Date"]}})

    assert superjson.parse(document) == "+010000-01-01T00:00:00.000Z"


def test_parse_as_json_canonical_date() -> None:
    document = json.dumps({"json": "2024-05-01", "meta": {"values": ["Date"]}})

    assert superjson.parse_as_json(document) == "2024-05-01T00:00:00.000Z"


def test_parse_regexp_normalizes_source() -> None:
    document = json.dumps({"json": "/a/b/ig", "meta": {"values": ["regexp"]}})

    assert superjson.parse(document) == JSRegExp("a\\/b", "gi")
    assert superjson.parse_as_json(document) == "/a\\/b/gi"


def test_regexp_to_pattern() -> None:
    pattern = JSRegExp("^hello (world)$", "gi").to_pattern()

    assert pattern.match("HELLO World")


def test_parse_buffer_wraps_bytes() -> None:
    document = '{"json":[0,255,256,-1],"meta":{"values":[["custom","buffer"]]}}'

    assert superjson.parse(document) == bytes([0, 255, 0, 255])


def test_parse_typed_array_conversions() -> None:
    document = json.dumps(
        {
            "json": {"i8": [127, 128, -129], "clamped": [300, -5, 1.5, 2.5], "u32": ["NaN", -1]},
            "meta": {
                "values": {
                    "i8": [["typed-array", "Int8Array"]],
                    "clamped": [["typed-array", "Uint8ClampedArray"]],
                    "u32": [["typed-array", "Uint32Array"]],
                }
            },
        }
    )

    result = superjson.parse(document)

    assert result["i8"] == array.array("b", [127, -128, 127])
    assert result["clamped"] == array.array("B", [255, 0, 2, 2])
    assert result["u32"] == array.array("I", [0, 4294967295])


def test_parse_error_fields() -> None:
    document = (
        '{"json":{"name":"TypeError","message":"bad","stack":"..."},"meta":{"values":["Error"]}}'
    )

    assert superjson.parse(document) == JSError("TypeError", "bad")
    assert superjson.parse_as_json(document) == {"name": "TypeError", "message": "bad"}


def test_parse_class_instance_dict() -> None:
    document = '{"json":{"a":1},"meta":{"values":[["class","Point"]]}}'

    assert superjson.parse(document) == {"a": 1}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ('{"json": NaN}', "not valid JSON"),
        ("[1]", '"json" key'),
        ('{"meta": {}}', '"json" key'),
        ('{"json": 1, "meta": []}', '"meta" must be an object'),
        ('{"json": 1, "meta": {"values": ["Temporal"]}}', "unknown type"),
        ('{"json": 1, "meta": {"values": [["custom", "decimal"]]}}', "unknown type"),
        ('{"json": 1, "meta": {"values": [["symbol", "s"]]}}', "unknown type"),
        ('{"json": 1, "meta": {"values": [[]]}}', "not a type name"),
        ('{"json": 1, "meta": {"values": []}}', "not a list of a type"),
        ('{"json": 1, "meta": {"values": {"a": 5}}}', "not a list of a type"),
        ('{"json": 1, "meta": {"values": ["map", []]}}', "must be an object"),
        ('{"json": "x", "meta": {"values": ["bigint"]}}', "not an integer"),
        ('{"json": "1.5", "meta": {"values": ["bigint"]}}', "not an integer"),
        ('{"json": 1, "meta": {"values": ["map"]}}', "not an array of entries"),
        ('{"json": [1], "meta": {"values": ["map"]}}', r"not a \[key, value\] array"),
        ('{"json": {}, "meta": {"values": ["set"]}}', "not an array"),
        ('{"json": "abc", "meta": {"values": ["regexp"]}}', "not /source/flags"),
        ('{"json": "/a/q", "meta": {"values": ["regexp"]}}', "invalid flags"),
        ('{"json": "relative/path", "meta": {"values": ["URL"]}}', "not an absolute URL"),
        ('{"json": "x", "meta": {"values": ["Error"]}}', "not an object"),
        (
            '{"json": 1, "meta": {"values": [["typed-array", "Float16Array"]]}}',
            "unknown typed array",
        ),
        ('{"json": 1, "meta": {"referentialEqualities": {"a": "b"}}}', "list of paths"),
        ('{"json": 1, "meta": {"referentialEqualities": [1]}}', "list form"),
        ('{"json": 1, "meta": {"referentialEqualities": 7}}', "list of paths"),
    ],
)
def test_parse_invalid_document(document: str, message: str) -> None:
    with pytest.raises(PacketDecodeError, match=message):
        superjson.parse(document)
    with pytest.raises(PacketDecodeError, match=message):
        superjson.parse_as_json(document)


def test_parse_invalid_utf8() -> None:
    with pytest.raises(PacketDecodeError, match="not valid UTF-8"):
        superjson.parse(b'{"json":"\xff"}')


def test_parse_annotation_on_missing_path_ignored() -> None:
    document = (
        '{"json":{"a":[1]},"meta":{"values":{"b.c":["Date"],"a.5":["bigint"],"a.x":["bigint"]}}}'
    )

    assert superjson.parse(document) == {"a": [1]}
    assert superjson.parse_as_json(document) == {"a": [1]}


def test_parse_deep_json_rejected() -> None:
    document = '{"json":' + "[" * 100_000 + "]" * 100_000 + "}"

    with pytest.raises(PacketDecodeError, match="nested too deeply"):
        superjson.parse(document)


def test_parse_deep_annotations_rejected() -> None:
    tree = '["map",{"0.1":' * 300 + '["set"]' + "}]" * 300
    document = '{"json":[],"meta":{"values":' + tree + "}}"

    with pytest.raises(PacketDecodeError, match="nested more than 200 levels"):
        superjson.parse(document, max_depth=200)
    with pytest.raises(PacketDecodeError, match="nested more than 200 levels"):
        superjson.parse_as_json(document, max_depth=200)


def test_parse_long_path_rejected() -> None:
    document = json.dumps({"json": {}, "meta": {"values": {".".join(["a"] * 600): ["Date"]}}})

    with pytest.raises(PacketDecodeError, match="more than 512 keys"):
        superjson.parse(document)


def test_parse_max_depth_argument() -> None:
    document = json.dumps({"json": {"a": {"b": "1"}}, "meta": {"values": {"a.b": ["bigint"]}}})

    assert superjson.parse(document, max_depth=2) == {"a": {"b": 1}}
    with pytest.raises(PacketDecodeError):
        superjson.parse(document, max_depth=1)


def test_parse_error_message_omits_values() -> None:
    document = json.dumps(
        {"json": {"secret": "hunter2-token"}, "meta": {"values": {"secret": ["bigint"]}}}
    )

    with pytest.raises(PacketDecodeError) as info:
        superjson.parse(document)

    assert "hunter2" not in str(info.value)
    assert "'secret'" in str(info.value)


def test_stringify_omits_empty_meta() -> None:
    assert superjson.stringify({"a": [1, "x", None, True]}) == '{"json":{"a":[1,"x",null,true]}}'


def test_stringify_big_int_as_bigint() -> None:
    text = superjson.stringify({"small": 2**53 - 1, "big": 2**53})

    assert text == (
        '{"json":{"small":9007199254740991,"big":"9007199254740992"},'
        '"meta":{"values":{"big":["bigint"]}}}'
    )


def test_stringify_special_floats() -> None:
    value = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5]

    text = superjson.stringify(value)

    assert json.loads(text)["json"] == ["NaN", "Infinity", "-Infinity", "-0", 0.0, 1.5]
    assert_same(superjson.parse(text), value)


def test_stringify_dict_with_int_keys_as_map() -> None:
    text = superjson.stringify({1: "a", 2: "b"})

    assert text == '{"json":[[1,"a"],[2,"b"]],"meta":{"values":["map"]}}'
    assert superjson.parse(text) == {1: "a", 2: "b"}


def test_stringify_escapes_dotted_keys() -> None:
    value = {"example.com": datetime(2024, 5, 1, tzinfo=timezone.utc)}

    text = superjson.stringify(value)

    assert json.loads(text)["meta"] == {"values": {"example\\.com": ["Date"]}}
    assert superjson.parse(text) == value


def test_stringify_exception_as_error() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("outer") from exc
    except ValueError as exc:
        text = superjson.stringify(exc)

    assert superjson.parse(text) == JSError("ValueError", "outer", JSError("KeyError", "'inner'"))
    assert superjson.parse_as_json(text) == {"name": "ValueError", "message": "outer"}


def test_stringify_typed_array() -> None:
    value = {"f": array.array("d", [1.5, math.nan]), "u": array.array("B", [1, 2])}

    text = superjson.stringify(value)

    assert json.loads(text)["json"] == {"f": [1.5, "NaN"], "u": [1, 2]}
    assert_same(superjson.parse(text), value)


def test_stringify_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        superjson.stringify({"at": datetime(2024, 1, 1)})


def test_stringify_unknown_type_rejected() -> None:
    with pytest.raises(TypeError, match="Cannot encode a value of type object"):
        superjson.stringify({"x": object()})


def test_stringify_deep_value_rejected() -> None:
    value: list[Any] = []
    for _ in range(2000):
        value = [value]

    with pytest.raises(ValueError, match="nested"):
        superjson.stringify(value)


def test_stringify_root_cycle() -> None:
    value: dict[str, Any] = {"name": "root"}
    value["self"] = value

    text = superjson.stringify(value)

    assert (
        text == '{"json":{"name":"root","self":null},"meta":{"referentialEqualities":[["self"]]}}'
    )
    result = superjson.parse(text)
    assert result["self"] is result


# -- property tests -----------------------------------------------------------

_keys = st.text(alphabet=string.ascii_letters + ".\\$_-0123456789", max_size=6)
_dates = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31),
    timezones=st.just(timezone.utc),
).map(lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000))
_hashable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    _dates,
    st.binary(max_size=8),
    st.builds(JSURL, st.from_regex(r"https://example\.com/[a-z0-9/]{0,10}", fullmatch=True)),
    st.builds(
        JSRegExp,
        st.text(alphabet="abc+*?()", min_size=1, max_size=5),
        st.sampled_from(["", "g", "gi", "su"]),
    ),
)
_leaves = st.one_of(
    _hashable,
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(JSError, st.text(max_size=10), st.text(max_size=20)),
    st.builds(lambda items: array.array("d", items), st.lists(st.floats(width=64), max_size=4)),
    st.builds(
        lambda items: array.array("h", items),
        st.lists(st.integers(-(2**15), 2**15 - 1), max_size=4),
    ),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_keys, children, max_size=4),
        st.dictionaries(st.integers(-5, 5), children, max_size=3),
        st.frozensets(st.one_of(st.text(max_size=5), st.integers(-5, 5), _dates), max_size=4).map(
            set
        ),
        st.lists(
            st.tuples(st.lists(st.integers(), max_size=2), children), min_size=1, max_size=3
        ).map(JSMap),
        st.lists(st.dictionaries(_keys, st.integers(), max_size=2), min_size=1, max_size=3).map(
            JSSet
        ),
    )


_values = st.recursive(_leaves, _containers, max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_stringify_round_trip_property(value: Any) -> None:
    text = superjson.stringify(value)

    assert_same(superjson.parse(text), value)
    assert_same(superjson.parse(text.encode("utf-8")), value)
    json.dumps(superjson.parse_as_json(text), allow_nan=False)


@settings(max_examples=150)
@given(
    st.one_of(
        st.lists(st.integers(), max_size=3), st.dictionaries(_keys, st.integers(), max_size=3)
    )
)
def test_stringify_shared_reference_property(shared: Any) -> None:
    value = {"a": shared, "b": [shared, {"c": shared}]}

    result = superjson.parse(superjson.stringify(value))

    assert result == value
    assert result["b"][0] is result["a"]
    assert result["b"][1]["c"] is result["a"]


_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=15,
)
_annotation = st.one_of(
    st.sampled_from(
        ["Date", "bigint", "undefined", "number", "set", "map", "regexp", "Error", "URL", "class"]
    ),
    st.sampled_from(
        [["custom", "buffer"], ["typed-array", "Uint8Array"], ["class", "X"], ["symbol", "s"]]
    ),
    _json,
)
_path = st.lists(st.sampled_from(["0", "1", "a", "b", "", "\\.", "x.y", "\\\\"]), max_size=4).map(
    ".".join
)
_tree = st.recursive(
    st.builds(lambda annotation: [annotation], _annotation),
    lambda children: st.one_of(
        st.builds(
            lambda annotation, inner: [annotation, inner],
            _annotation,
            st.dictionaries(_path, children, max_size=3),
        ),
        st.dictionaries(_path, children, max_size=3),
    ),
    max_leaves=8,
)
_meta = st.fixed_dictionaries(
    {},
    optional={
        "values": st.one_of(_tree, _json),
        "referentialEqualities": st.one_of(
            st.dictionaries(_path, st.lists(_path, max_size=3), max_size=3),
            st.tuples(st.lists(_path, max_size=2)).map(list),
            _json,
        ),
        "v": st.sampled_from([1, 2, "1", None]),
    },
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_json, _meta)
def test_parse_fuzzed_meta_property(value: Any, meta: dict[str, Any]) -> None:
    document = json.dumps({"json": value, "meta": meta})

    for decode in (superjson.parse, superjson.parse_as_json):
        with contextlib.suppress(PacketDecodeError):
            decode(document)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_parse_fuzzed_bytes_property(data: bytes) -> None:
    for decode in (superjson.parse, superjson.parse_as_json):
        with contextlib.suppress(PacketDecodeError):
            decode(data)


@settings(max_examples=200)
@given(_meta)
def test_parse_as_json_output_is_json_property(meta: dict[str, Any]) -> None:
    document = json.dumps(
        {"json": {"a": [1, {"b": "2024-01-01T00:00:00.000Z"}], "0": "NaN"}, "meta": meta}
    )
    try:
        result = superjson.parse_as_json(document)
    except PacketDecodeError:
        return

    json.dumps(result, allow_nan=False)
