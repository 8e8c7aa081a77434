"""Tests for decoding packets by data type, over every packet vector and the
large offloaded bodies."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import VECTORS_DIR
from hypothesis import given, settings
from hypothesis import strategies as st
from vector_values import assert_same, from_tagged, load_case

from flask_trigger_outputs import superjson
from flask_trigger_outputs.decoding import decode_packet, encode_packet, media_type
from flask_trigger_outputs.errors import PacketDecodeError, StorageError

RUN_ID = "run_decodetest1"

S3_NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
    b"<Key>packets/run_x/output.json</Key></Error>"
)


def _string_case_names() -> list[str]:
    names = []
    for path in sorted((VECTORS_DIR / "cases").glob("*.json")):
        case = load_case(path)
        packet = case.get("packet")
        if packet is not None and case.get("packet_data_is_string", True):
            names.append(path.stem)
    return names


def _large_names() -> list[str]:
    return sorted(
        path.name.removesuffix(".body") for path in (VECTORS_DIR / "large").glob("*.body")
    )


CASE_NAMES = _string_case_names()
LARGE_NAMES = _large_names()

TYPED_OVERRIDES: dict[str, Any] = {
    # superjson 2.2.7 keeps an Error's cause and this decoder returns it;
    # Trigger.dev's own decoder (superjson 2.2.1) drops it.
    "error_with_cause__superjson_2_2_7": {
        "err": superjson.JSError("Error", "outer", superjson.JSError("Error", "inner")),
    },
}


@pytest.fixture
def case(request: pytest.FixtureRequest, vectors_dir: Path) -> dict[str, Any]:
    return load_case(vectors_dir / "cases" / f"{request.param}.json")


def test_vectors_cover_every_data_type(vectors_dir: Path) -> None:
    data_types = set()
    for name in CASE_NAMES:
        data_types.add(load_case(vectors_dir / "cases" / f"{name}.json")["packet"]["dataType"])

    assert data_types == {"application/json", "application/super+json", "text/plain"}
    assert LARGE_NAMES


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_decode_packet_vector_typed(case: dict[str, Any]) -> None:
    packet = case["packet"]
    expected = TYPED_OVERRIDES.get(case["name"])
    if expected is None:
        expected = from_tagged(case["expected_typed"])

    result = decode_packet(packet.get("data"), packet["dataType"], run_id=RUN_ID)

    assert_same(result, expected)


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_decode_packet_vector_as_json(case: dict[str, Any]) -> None:
    packet = case["packet"]

    result = decode_packet(packet.get("data"), packet["dataType"], as_json=True, run_id=RUN_ID)

    if case.get("expected_as_json_absent"):
        assert result is None
    else:
        assert_same(result, case["expected_as_json"])


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_decode_packet_vector_body(case: dict[str, Any]) -> None:
    # Offloaded, the same packet arrives as UTF-8 bytes with the data type
    # as Content-Type, in any letter case and with parameters.
    packet = case["packet"]
    data = packet.get("data")
    if data is None:
        pytest.skip("the packet has no data to store")
    if any(0xD800 <= ord(char) <= 0xDFFF for char in data):
        pytest.skip("a lone surrogate has no UTF-8 encoding")
    content_type = packet["dataType"].upper() + "; charset=utf-8"

    typed = decode_packet(data.encode(), content_type, run_id=RUN_ID)
    as_json = decode_packet(data.encode(), content_type, as_json=True, run_id=RUN_ID)

    assert_same(typed, decode_packet(data, packet["dataType"]))
    assert_same(as_json, decode_packet(data, packet["dataType"], as_json=True))


@pytest.mark.parametrize("name", LARGE_NAMES)
def test_decode_packet_large_body(vectors_dir: Path, name: str) -> None:
    large = vectors_dir / "large"
    body = (large / f"{name}.body").read_bytes()
    packet = load_case(large / f"{name}.packet.json")

    typed = decode_packet(body, packet["dataType"], run_id=RUN_ID)
    as_json = decode_packet(body, packet["dataType"], as_json=True, run_id=RUN_ID)

    assert packet["data"].encode() == body
    assert_same(typed, from_tagged(load_case(large / f"{name}.expected_typed.json")))
    assert_same(as_json, load_case(large / f"{name}.expected_as_json.json"))


def test_decode_packet_non_string_data() -> None:
    # stringifyIO falls back to the raw object when superjson rejects it
    # (a BigInt64Array, a key named "constructor"). Such a packet never
    # reaches storage, so it is not data.
    with pytest.raises(PacketDecodeError, match="expected text or bytes"):
        decode_packet({"constructor": "x"}, "application/json", run_id=RUN_ID)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("application/json", "application/json"),
        ("Application/JSON; charset=utf-8", "application/json"),
        (" application/super+json ;charset=UTF-8", "application/super+json"),
        ("TEXT/PLAIN", "text/plain"),
        ("application/octet-stream", "application/octet-stream"),
    ],
)
def test_media_type(content_type: str | None, expected: str) -> None:
    assert media_type(content_type) == expected


def test_decode_packet_missing_type_is_json() -> None:
    assert decode_packet(b'{"a": [1, 2]}', None) == {"a": [1, 2]}


def test_decode_packet_superjson_wrapper_decoded() -> None:
    body = b'{"json":{"at":"2024-05-01T00:00:00.000Z"},"meta":{"values":{"at":["Date"]}}}'

    typed = decode_packet(body, "application/super+json")
    as_json = decode_packet(body, "application/super+json", as_json=True)

    assert typed["at"].isoformat() == "2024-05-01T00:00:00+00:00"
    assert as_json == {"at": "2024-05-01T00:00:00.000Z"}


def test_decode_packet_text_not_parsed() -> None:
    assert decode_packet(b'{"a": 1}', "text/plain") == '{"a": 1}'
    assert decode_packet(b'{"a": 1}', "text/plain", as_json=True) == '{"a": 1}'


def test_decode_packet_empty_data_none() -> None:
    for data_type in ("application/json", "application/super+json", "text/plain"):
        assert decode_packet(b"", data_type) is None
        assert decode_packet("", data_type) is None
        assert decode_packet(None, data_type) is None


def test_decode_packet_bom_json_ignored() -> None:
    body = "\ufeff" + '{"json":[1]}'

    assert decode_packet(body.encode(), "application/super+json") == [1]
    assert decode_packet("\ufeff[1]".encode(), "application/json") == [1]


def test_decode_packet_bom_text_kept() -> None:
    assert decode_packet("\ufeffhello".encode(), "text/plain") == "\ufeffhello"


def test_decode_packet_unknown_type_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_trigger_outputs.decoding")

    result = decode_packet(b"a,b\n1,2\n", "text/csv", run_id=RUN_ID)

    assert result == "a,b\n1,2\n"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert RUN_ID in warnings[0].getMessage()
    assert "text/csv" in warnings[0].getMessage()
    assert "a,b" not in warnings[0].getMessage()


@pytest.mark.parametrize(
    "content_type",
    ["application/xml", "text/xml; charset=utf-8", "application/octet-stream", "", None],
)
def test_decode_packet_s3_error_rejected(content_type: str | None) -> None:
    with pytest.raises(StorageError, match="NoSuchKey") as info:
        decode_packet(S3_NO_SUCH_KEY, content_type, run_id=RUN_ID)

    assert info.value.run_id == RUN_ID
    assert RUN_ID in str(info.value)
    assert "packets/run_x" not in str(info.value)


def test_decode_packet_s3_error_text_rejected() -> None:
    body = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"

    with pytest.raises(StorageError, match="AccessDenied"):
        decode_packet(body, "application/xml", run_id=RUN_ID)


def test_decode_packet_xml_output_kept() -> None:
    body = b'<?xml version="1.0"?><feed><title>Not an error</title></feed>'

    assert decode_packet(body, "text/plain") == body.decode()


@pytest.mark.parametrize("data", [S3_NO_SUCH_KEY, S3_NO_SUCH_KEY.decode()])
def test_decode_packet_text_error_document_kept(data: str | bytes) -> None:
    # A task may return an XML document that looks like a storage error, and
    # its text/plain data type marks it as data.
    assert decode_packet(data, "text/plain", run_id=RUN_ID) == S3_NO_SUCH_KEY.decode()


@pytest.mark.parametrize("content_type", ["application/json", "application/super+json"])
def test_decode_packet_json_error_document_invalid(content_type: str) -> None:
    with pytest.raises(PacketDecodeError, match="not valid JSON"):
        decode_packet(S3_NO_SUCH_KEY, content_type, run_id=RUN_ID)


def test_decode_packet_invalid_utf8() -> None:
    with pytest.raises(PacketDecodeError) as info:
        decode_packet(b'{"json":"secret \xff value"}', "application/super+json", run_id=RUN_ID)

    message = str(info.value)
    assert "not valid UTF-8" in message
    assert RUN_ID in message
    assert "application/super+json" in message
    assert "secret" not in message
    assert info.value.run_id == RUN_ID


@pytest.mark.parametrize("content_type", ["application/json", "application/super+json"])
def test_decode_packet_invalid_json(content_type: str) -> None:
    with pytest.raises(PacketDecodeError) as info:
        decode_packet(b'{"json": "secret-value", ', content_type, run_id=RUN_ID)

    message = str(info.value)
    assert "not valid JSON" in message
    assert RUN_ID in message
    assert content_type in message
    assert "secret-value" not in message


def test_decode_packet_invalid_superjson() -> None:
    with pytest.raises(PacketDecodeError) as info:
        decode_packet(b'{"output": 1}', "application/super+json", run_id=RUN_ID)

    assert str(info.value).startswith(
        f"The application/super+json packet of run {RUN_ID!r} could not be decoded."
    )


def test_decode_packet_json_nan_rejected() -> None:
    with pytest.raises(PacketDecodeError, match="NaN is not valid JSON"):
        decode_packet(b"[NaN]", "application/json", run_id=RUN_ID)


def test_decode_packet_deep_json_rejected() -> None:
    body = b"[" * 200_000 + b"]" * 200_000

    with pytest.raises(PacketDecodeError, match="nested too deeply"):
        decode_packet(body, "application/json", run_id=RUN_ID)
    with pytest.raises(PacketDecodeError, match="nested too deeply"):
        decode_packet(b'{"json":' + body + b"}", "application/super+json", run_id=RUN_ID)


def test_decode_packet_store_pointer_rejected() -> None:
    with pytest.raises(PacketDecodeError, match="pointer to offloaded data"):
        decode_packet("packets/run_x/output.json", "application/store", run_id=RUN_ID)


def test_encode_packet_string_text() -> None:
    assert encode_packet("hello") == ("hello", "text/plain")
    assert encode_packet("") == ("", "text/plain")


def test_encode_packet_value_superjson() -> None:
    data, data_type = encode_packet({"n": 1, "url": superjson.JSURL("https://example.com/")})

    assert data_type == "application/super+json"
    assert data == '{"json":{"n":1,"url":"https://example.com/"},"meta":{"values":{"url":["URL"]}}}'
    assert decode_packet(data, data_type) == {"n": 1, "url": "https://example.com/"}


def test_encode_packet_none_null() -> None:
    assert encode_packet(None) == ('{"json":null}', "application/super+json")


@pytest.mark.parametrize("case", CASE_NAMES, indirect=True)
def test_encode_packet_vector_round_trip(case: dict[str, Any]) -> None:
    packet = case["packet"]
    value = decode_packet(packet.get("data"), packet["dataType"])
    if value is None and not packet.get("data"):
        pytest.skip("undefined has no Python value to encode")

    data, data_type = encode_packet(value)

    assert_same(decode_packet(data, data_type), value)
    if packet["dataType"] == "text/plain":
        assert (data, data_type) == (packet["data"], "text/plain")


_content_types = st.one_of(
    st.none(),
    st.sampled_from(
        ["application/json", "application/super+json", "text/plain", "application/store", "x/y"]
    ),
    st.text(max_size=30),
)


@settings(max_examples=400)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)), _content_types, st.booleans())
def test_decode_packet_fuzzed_property(
    data: bytes | str, content_type: str | None, as_json: bool
) -> None:
    logger = logging.getLogger("flask_trigger_outputs.decoding")
    logger.disabled = True
    error: Exception | None = None
    try:
        decode_packet(data, content_type, as_json=as_json, run_id=RUN_ID)
    except (PacketDecodeError, StorageError) as exc:
        error = exc
    finally:
        logger.disabled = False

    if error is not None:
        assert getattr(error, "run_id", None) == RUN_ID


@settings(max_examples=200)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(max_size=5), children, max_size=3),
        ),
        max_leaves=10,
    )
)
def test_decode_packet_json_property(value: Any) -> None:
    body = json.dumps(value).encode()

    assert decode_packet(body, "application/json") == value
    assert decode_packet(body, "application/json", as_json=True) == value
