"""Generated requests against the six routes: none gets a 5xx response.

schemathesis generates requests from the package's OpenAPI document, valid
ones and ones that break the document's rules. hypothesis adds the inputs a
document does not describe. Run ids and query strings get unicode, path
separators, percent-escapes, NUL, very long values and repeated parameters.
Request bodies are deeply nested, huge, not UTF-8 or of another content
type. Every response must be below 500, and every 4xx response a
JSON object with the string fields ``error`` and ``message``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import schemathesis
from extension_tasks import make_app, register_tasks
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from flask_trigger_outputs.emulator import Emulator, EmulatorServer

ROUTES = [
    "/api/crawl",
    "/api/crawl/status",
    "/api/site-audit",
    "/api/ai-strategy",
    "/api/audit",
    "/api/content/analyze",
]
RUN_ID_PARAMETERS = ["runId", "extractionRunId", "analysisRunId"]

FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator()) as server:
        register_tasks(server)
        yield server


@pytest.fixture(scope="module")
def app(server: EmulatorServer) -> Flask:
    return make_app(
        server,
        TRIGGER_OUTPUTS_MAX_TRIES=1,
        TRIGGER_OUTPUTS_READ_TIMEOUT=2.0,
        TRIGGER_OUTPUTS_MAX_PAYLOAD_SIZE=64 * 1024,
    )


def check_response(status: int, content_type: str | None, data: bytes, request: str) -> None:
    assert status < 500, f"{request} got {status}: {data[:300]!r}"
    if 400 <= status < 500:
        assert content_type is not None
        assert content_type.startswith("application/json"), request
        body = json.loads(data)
        assert isinstance(body, dict), request
        assert isinstance(body.get("error"), str), request
        assert isinstance(body.get("message"), str), request
        assert body["message"], request


def load_operations() -> list[Any]:
    text = resources.files("flask_trigger_outputs").joinpath("openapi.json").read_text("utf-8")
    schema = schemathesis.openapi.from_dict(json.loads(text))
    return [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]


OPERATIONS = load_operations()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(
    "operation", OPERATIONS, ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS]
)
def test_routes_schemathesis_no_server_error(
    operation: Any, mode: GenerationMode, app: Flask
) -> None:
    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(mode))
    def check(case: Any) -> None:
        response = case.call(app=app)
        # schemathesis keeps each header as a list of its values.
        content_type = response.headers.get("content-type", [None])[0]
        request = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}"
        check_response(response.status_code, content_type, response.content, request)

    try:
        check()
    except BaseException as error:
        if not _is_cpython_ast_depth_bug(error):
            raise
        # hypothesis parsed the lambda sources before the error and cached
        # them, so the second run does not call ast.parse again.
        check()


def _is_cpython_ast_depth_bug(error: BaseException) -> bool:
    """Tell whether ``error`` comes from a spurious SystemError of CPython
    3.11.7 and older, "AST constructor recursion depth mismatch", raised
    while hypothesis parses the source of a lambda to describe a strategy
    (python/cpython#106905). It is not a failure of the routes.
    """
    seen: list[BaseException] = [error]
    while seen:
        current = seen.pop()
        if isinstance(current, SystemError) and "recursion depth mismatch" in str(current):
            return True
        # Exception groups (hypothesis reports several failures as one).
        seen.extend(getattr(current, "exceptions", ()))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                seen.append(linked)
    return False


# -- hypothesis: run ids and query strings -------------------------------------

HOSTILE_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["/", "\\", "..", "%", "%2F", "%00", "\x00", "?", "&", "#", "=", "+"]),
        st.characters(codec="utf-8"),
    ),
    max_size=80,
).map("".join)
RUN_ID_LIKE = st.one_of(
    HOSTILE_TEXT,
    st.from_regex(r"run_[a-z0-9]{1,30}", fullmatch=True),
    st.builds(lambda suffix: "run_" + suffix, HOSTILE_TEXT),
    st.integers(min_value=1, max_value=200_000).map(lambda size: "run_" + "a" * size),
)
RAW_QUERY = st.text(
    alphabet=st.sampled_from(list("runIdformat=&%0123456789abcdefABCDEF+_-./;")), max_size=120
)


@pytest.mark.timeout(120)
@FUZZ_SETTINGS
@given(
    route=st.sampled_from(ROUTES),
    values=st.dictionaries(
        st.sampled_from([*RUN_ID_PARAMETERS, "format", "x"]),
        st.lists(RUN_ID_LIKE, min_size=1, max_size=3),
        max_size=3,
    ),
)
def test_routes_hostile_query_values(route: str, values: dict[str, list[str]], app: Flask) -> None:
    query = [(name, value) for name, items in values.items() for value in items]

    response = app.test_client().get(route, query_string=query)

    check_response(response.status_code, response.content_type, response.data, f"{route} {query}")


@pytest.mark.timeout(120)
@FUZZ_SETTINGS
@given(route=st.sampled_from(ROUTES), raw=RAW_QUERY)
def test_routes_raw_percent_encoded_query(route: str, raw: str, app: Flask) -> None:
    response = app.test_client().get(f"{route}?{raw}")

    check_response(response.status_code, response.content_type, response.data, f"{route}?{raw}")


# -- hypothesis: request bodies ----------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda depth, kind: nested(depth, kind).encode(),
        st.integers(min_value=1, max_value=100_000),
        st.sampled_from(["list", "object"]),
    ),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=300_000).map(lambda size: b'{"s": "' + b"x" * size + b'"}'),
    st.just(b'{"payload": "\\u0000 nul \\ud800"}'),
    st.just(b'{"a": NaN}'),
    st.just(b'{"a": 1}\x00'),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json; charset=latin-1",
        "",
    ]
)


@pytest.mark.timeout(180)
@FUZZ_SETTINGS
@given(
    route=st.sampled_from([route for route in ROUTES if route != "/api/crawl/status"]),
    body=BODIES,
    content_type=CONTENT_TYPES,
)
def test_routes_hostile_bodies(route: str, body: bytes, content_type: str, app: Flask) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    response = app.test_client().post(route, data=body, headers=headers)

    check_response(
        response.status_code,
        response.content_type,
        response.data,
        f"POST {route} {content_type} {body[:100]!r}",
    )


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("route", ROUTES)
def test_routes_other_methods_json_405(route: str, method: str, app: Flask) -> None:
    response = app.test_client().open(route, method=method)

    assert response.status_code == 405
    check_response(response.status_code, response.content_type, response.data, route)
