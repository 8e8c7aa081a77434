"""The superjson decoder under generated, mostly malformed, documents.

Every document either decodes or raises ``PacketDecodeError``: never another
exception, and never a ``RecursionError``, whatever the nesting depth of the
value, of the annotations or of the paths. A value that decodes to its JSON
form can be serialized as strict JSON, since the routes send it as is.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_trigger_outputs import PacketDecodeError, superjson
from flask_trigger_outputs.decoding import decode_packet

FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)

TYPE_NAMES = [
    "undefined",
    "bigint",
    "Date",
    "regexp",
    "set",
    "map",
    "Error",
    "URL",
    "number",
    "symbol",
    "class",
    "custom",
    "Int8Array",
    "Float64Array",
    "nonsense",
    "",
]

KEYS = st.sampled_from(["a", "b", "0", "1", "2", "a.b", "a\\.b", "", "__proto__", "json", "é"])

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "Infinity", "-0", "2024-01-01T00:00:00.000Z", "/a+/gi", "123n"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=25,
)

PATHS = st.one_of(
    st.lists(KEYS, max_size=6).map(".".join),
    st.text(alphabet=st.sampled_from(list("ab01.\\")), max_size=30),
    st.integers(min_value=1, max_value=5000).map(lambda depth: ".".join(["a"] * depth)),
)

ANNOTATIONS = st.recursive(
    st.sampled_from(TYPE_NAMES) | st.integers() | st.none(),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(st.sampled_from(["class", "custom", "symbol"]), st.text(max_size=10)).map(list),
        st.tuples(st.sampled_from(TYPE_NAMES), st.dictionaries(KEYS, children, max_size=3)).map(
            list
        ),
    ),
    max_leaves=8,
)

META_VALUES = st.one_of(
    st.dictionaries(PATHS, ANNOTATIONS, max_size=5),
    ANNOTATIONS,
    JSON_VALUES,
)

EQUALITIES = st.one_of(
    st.dictionaries(PATHS, st.lists(PATHS, max_size=3), max_size=4),
    st.lists(st.dictionaries(PATHS, st.lists(PATHS, max_size=2), max_size=2), max_size=2),
    JSON_VALUES,
)

DOCUMENTS = st.fixed_dictionaries(
    {"json": JSON_VALUES},
    optional={
        "meta": st.fixed_dictionaries(
            {},
            optional={
                "values": META_VALUES,
                "referentialEqualities": EQUALITIES,
                "v": st.integers(),
            },
        )
        | JSON_VALUES
    },
)


def decode_error(text: str | bytes, *, as_json: bool) -> str | None:
    """Decode ``text`` and return the PacketDecodeError message, or None
    when it decodes. Any other exception propagates and fails the test."""
    try:
        value = superjson.parse_as_json(text) if as_json else superjson.parse(text)
    except PacketDecodeError as error:
        return error.message
    if as_json:
        json.dumps(value, allow_nan=False)
    return None


def decode_both(text: str | bytes) -> None:
    """Decode ``text`` typed and as JSON; only PacketDecodeError may escape."""
    for as_json in (False, True):
        message = decode_error(text, as_json=as_json)
        assert message is None or message.startswith("Invalid superjson"), message


@FUZZ_SETTINGS
@given(document=DOCUMENTS)
def test_superjson_generated_documents(document: dict[str, Any]) -> None:
    decode_both(json.dumps(document))


@FUZZ_SETTINGS
@given(value=JSON_VALUES, paths=st.lists(PATHS, min_size=1, max_size=4), annotation=ANNOTATIONS)
def test_superjson_annotations_on_any_path(value: Any, paths: list[str], annotation: Any) -> None:
    document = {"json": value, "meta": {"values": dict.fromkeys(paths, annotation)}}

    decode_both(json.dumps(document))


@FUZZ_SETTINGS
@given(
    value=st.dictionaries(KEYS, JSON_VALUES, min_size=1, max_size=4),
    pairs=st.lists(st.tuples(PATHS, PATHS), min_size=1, max_size=4),
)
def test_superjson_equalities_with_cycles(value: Any, pairs: list[tuple[str, str]]) -> None:
    # Pointing a path at one of its own descendants, or the reverse, makes
    # a cycle when the typed value is built.
    equalities = {source: [target, f"{target}.{source}"] for source, target in pairs}
    document = {"json": value, "meta": {"referentialEqualities": equalities}}

    decode_both(json.dumps(document))


@pytest.mark.parametrize("depth", [100, 511, 513, 5_000, 200_000])
@pytest.mark.parametrize("kind", ["list", "object", "map", "path"])
def test_superjson_deep_nesting_no_recursion_error(depth: int, kind: str) -> None:
    if kind == "list":
        text = '{"json":' + "[" * depth + "]" * depth + "}"
    elif kind == "object":
        text = '{"json":' + '{"a":' * depth + "1" + "}" * depth + "}"
    elif kind == "map":
        # Nested Maps: every level is annotated.
        inner = "[]"
        for _ in range(min(depth, 3000)):
            inner = f'[["k",{inner}]]'
        text = '{"json":' + inner + ',"meta":{"values":["map",{"0":{"1":["map"]}}]}}'
    else:
        path = ".".join(["a"] * depth)
        text = '{"json":{"a":1},"meta":{"values":{"' + path + '":["Date"]}}}'

    decode_both(text)


@FUZZ_SETTINGS
@given(
    data=st.binary(max_size=300),
    content_type=st.sampled_from(
        ["application/super+json", "application/json", "text/plain", "application/store", "x/y"]
    ),
)
def test_decode_packet_arbitrary_bytes(data: bytes, content_type: str) -> None:
    for as_json in (False, True):
        message = None
        try:
            decode_packet(data, content_type, as_json=as_json, run_id="run_fuzz")
        except PacketDecodeError as error:
            message = error.message
        assert message is None or "run_fuzz" in message


def test_recursion_limit_unchanged() -> None:
    # The decoder bounds depth itself rather than raising the interpreter's limit.
    before = sys.getrecursionlimit()

    decode_both('{"json":' + "[" * 100_000 + "]" * 100_000 + "}")

    assert sys.getrecursionlimit() == before
