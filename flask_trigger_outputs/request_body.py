"""Read and validate the run ids and JSON bodies of requests to the routes.

Every error names the query parameter, or ``body``, and what was expected.
The blueprint's handlers turn the errors into JSON responses.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from .errors import InvalidRunIdError, PayloadTooLargeError, TriggerOutputsError
from .runs import validate_run_id


class InvalidRequestError(TriggerOutputsError, ValueError):
    """A request body is missing, is not JSON or is not a JSON object.

    :param field: the part of the request at fault, ``"body"``.
    """

    code = "invalid_request"
    http_status = 400

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnsupportedMediaTypeError(TriggerOutputsError, ValueError):
    """A request body is not declared as JSON by its ``Content-Type``."""

    code = "unsupported_media_type"
    http_status = 415

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.field = "body"


class InvalidRunIdParameterError(InvalidRunIdError):
    """A query parameter that must hold a run id is missing or invalid.

    :param field: the query parameter, such as ``"runId"``.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def read_run_id(name: str) -> str:
    """Read the run id in the query parameter ``name``.

    :param name: the query parameter, such as ``"runId"``.
    :raises InvalidRunIdParameterError: if the parameter is missing, given
        more than once, or not a valid run id.
    """
    run_id = read_optional_run_id(name)

    if run_id is None:
        raise InvalidRunIdParameterError(
            f"The query parameter {name} is missing. Pass the run id returned when the run"
            f" was started, such as ?{name}=run_abc123.",
            field=name,
        )

    return run_id


def read_optional_run_id(name: str) -> str | None:
    """Read the run id in the query parameter ``name``, or return ``None``
    when the parameter is absent.

    :raises InvalidRunIdParameterError: if the parameter is given more than
        once or is not a valid run id.
    """
    values = request.args.getlist(name)

    if not values:
        return None
    if len(values) > 1:
        raise InvalidRunIdParameterError(
            f"The query parameter {name} is given {len(values)} times; expected one run id.",
            field=name,
        )

    try:
        return validate_run_id(values[0])
    except InvalidRunIdError as error:
        raise InvalidRunIdParameterError(
            f"The query parameter {name} is invalid. {error.message}", field=name
        ) from None


def read_json_object(max_size: int) -> dict[str, Any]:
    """Read the request body as a JSON object of at most ``max_size`` bytes.

    The size is checked against ``Content-Length`` before anything is read,
    and again while reading, for bodies sent without a length.

    :raises PayloadTooLargeError: if the body is larger than ``max_size``.
    :raises UnsupportedMediaTypeError: if the ``Content-Type`` is not JSON.
    :raises InvalidRequestError: if the body is not valid UTF-8 JSON or is
        not a JSON object. An empty body reads as ``{}``.
    """
    length = request.content_length

    if length is not None and length > max_size:
        raise _too_large(length, max_size)

    if not request.is_json:
        raise UnsupportedMediaTypeError(
            "The request body must be JSON with Content-Type application/json, got"
            f" {request.mimetype or 'no Content-Type'}."
        )

    data = request.stream.read(max_size + 1)

    if len(data) > max_size:
        raise _too_large(None, max_size)
    if not data.strip():
        # An empty JSON body starts the task with its defaults. The JSON
        # Content-Type is still required: a cross-site page cannot send it
        # without a CORS preflight.
        return {}

    value = _parse_json(data)

    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object with the task's payload, got a JSON"
            f" {_json_type_name(value)}.",
            field="body",
        )

    return value


def _parse_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequestError(
            f"The request body is not valid UTF-8 (invalid byte at offset {error.start}).",
            field="body",
        ) from None

    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise InvalidRequestError(
            f"The request body is not valid JSON: {error.msg} at line {error.lineno}"
            f" column {error.colno}.",
            field="body",
        ) from None
    except _ConstantError as error:
        raise InvalidRequestError(
            f"The request body is not valid JSON: {error} is not a JSON value.", field="body"
        ) from None
    except RecursionError:
        raise InvalidRequestError(
            "The request body is nested too deeply to parse.", field="body"
        ) from None

    try:
        # An escaped lone surrogate ("\ud800") parses but cannot be sent on
        # as UTF-8, so it is rejected here rather than failing later.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(
            "The request body contains an unpaired surrogate escape such as \\ud800,"
            " which is not valid Unicode.",
            field="body",
        ) from None

    return value


class _ConstantError(ValueError):
    """NaN, Infinity or -Infinity, which Python's json module accepts but
    JSON does not."""


def _reject_constant(name: str) -> Any:
    raise _ConstantError(name)


def _too_large(size: int | None, limit: int) -> PayloadTooLargeError:
    """Create the 413 error; ``size`` is ``None`` when the body came without
    a length and reading stopped at the limit."""
    if size is None:
        message = f"The request body is larger than the {limit}-byte limit of a trigger payload."
    else:
        message = (
            f"The request body is {size} bytes, over the {limit}-byte limit of a trigger payload."
        )

    return PayloadTooLargeError(message, size=limit + 1 if size is None else size, limit=limit)


def _json_type_name(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
