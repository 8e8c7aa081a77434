"""The blueprint with the six JSON routes that start and poll runs.

Each route maps to one configurable task. POST starts a run of that task with
the JSON body as payload and responds 202 with the URL to poll. GET reads the
run named by the query string and returns its status, and its output once it
succeeded. A GET responds 404 for a run of another task, a run the app's
``authorize`` callback rejects and a run without the tags of the current
request. The body is the same as for an unknown run, so run ids cannot be
probed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .access import request_tags
from .content_analysis import CONTENT_ANALYZE, read_content_analysis
from .errors import TriggerOutputsError
from .request_body import read_json_object, read_run_id
from .run_loading import load_checked_run
from .serialize import result_to_json
from .stream import json_response, packet_response, read_output_format

if TYPE_CHECKING:
    from .extension import TriggerOutputs, TriggerOutputsState

logger = logging.getLogger(__name__)

#: Name of the blueprint, so endpoints are ``trigger_outputs.crawl`` and so on.
BLUEPRINT_NAME = "trigger_outputs"

# Methods each view accepts so that a wrong method reaches the view and gets
# a JSON 405 from the blueprint's handler. A 405 raised by URL routing, before
# any view runs, would get the app's HTML error page instead. The views respond
# to OPTIONS themselves, so the Allow header lists only the methods they serve.
_ROUTED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Error codes of HTTP errors raised inside the views, such as a 413 from the
# app's MAX_CONTENT_LENGTH. Other statuses get a code made from their name.
_HTTP_ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True)
class TaskRoute:
    """One route that starts and reads runs of a single task."""

    #: Endpoint name inside the blueprint, also passed to ``authorize``.
    name: str
    #: URL rule, relative to the blueprint's prefix.
    rule: str
    #: Attribute of :class:`~flask_trigger_outputs.config.TriggerOutputsConfig`
    #: that contains the task identifier.
    task_setting: str
    #: Whether POST starts a run. ``/api/crawl/status`` only reads.
    can_start: bool = True
    #: Whether GET returns the output of a successful run.
    include_output: bool = True


#: The single-task routes. ``/api/content/analyze`` chains two tasks and has
#: its own view, whose reading is in :mod:`flask_trigger_outputs.content_analysis`.
TASK_ROUTES = (
    TaskRoute("crawl", "/api/crawl", "task_crawl"),
    TaskRoute(
        "crawl_status",
        "/api/crawl/status",
        "task_crawl",
        can_start=False,
        include_output=False,
    ),
    TaskRoute("site_audit", "/api/site-audit", "task_site_audit"),
    TaskRoute("ai_strategy", "/api/ai-strategy", "task_ai_strategy"),
    TaskRoute("audit", "/api/audit", "task_audit"),
)


def create_blueprint(extension: TriggerOutputs) -> Blueprint:
    """Create the blueprint of one extension object, fully declared.

    Error handlers are registered on the blueprint only, so they return JSON
    for errors raised inside its views and leave the rest of the app alone.
    """
    from .extension import get_state  # extension.py imports this module

    blueprint = Blueprint(BLUEPRINT_NAME, __name__)

    def make_task_view(route: TaskRoute) -> Any:
        allowed = ["GET", "POST"] if route.can_start else ["GET"]

        def view() -> Response | tuple[Response, int]:
            if request.method == "OPTIONS":
                return options_response(allowed)
            check_method(allowed)

            state = get_state()
            task_id: str = getattr(state.config, route.task_setting)

            if request.method == "POST":
                run_id = start_run(state, extension, task_id)
                return accepted(
                    {"runId": run_id, "taskIdentifier": task_id},
                    url_for(f".{route.name}", runId=run_id),
                )

            return read_task_run(state, extension, route, task_id)

        view.__name__ = route.name
        return view

    for route in TASK_ROUTES:
        blueprint.add_url_rule(
            route.rule,
            view_func=make_task_view(route),
            methods=_ROUTED_METHODS,
            provide_automatic_options=False,
        )

    def content_analyze() -> Response | tuple[Response, int]:
        if request.method == "OPTIONS":
            return options_response(["GET", "POST"])
        check_method(["GET", "POST"])

        state = get_state()

        if request.method == "POST":
            run_id = start_run(state, extension, state.config.task_content_extraction)
            return accepted(
                {"extractionRunId": run_id},
                url_for(f".{CONTENT_ANALYZE}", extractionRunId=run_id),
            )

        return read_content_analysis(state, extension)

    blueprint.add_url_rule(
        "/api/content/analyze",
        view_func=content_analyze,
        methods=_ROUTED_METHODS,
        provide_automatic_options=False,
    )

    blueprint.after_request(_disable_caching)
    blueprint.register_error_handler(TriggerOutputsError, _handle_package_error)
    blueprint.register_error_handler(HTTPException, _handle_http_error)
    blueprint.register_error_handler(Exception, _handle_unexpected_error)

    return blueprint


def check_method(allowed: list[str]) -> None:
    """Raise a 405 error unless the request's method is in ``allowed``.

    HEAD is allowed wherever GET is, as Flask does for its own routes.
    """
    if request.method in allowed or (request.method == "HEAD" and "GET" in allowed):
        return

    raise MethodNotAllowed(valid_methods=allowed)


def options_response(allowed: list[str]) -> Response:
    """Build the response to an OPTIONS request, listing the route's methods."""
    response = current_app.make_default_options_response()
    response.headers["Allow"] = ", ".join([*allowed, "HEAD", "OPTIONS"])
    return response


def accepted(body: dict[str, Any], status_url: str) -> tuple[Response, int]:
    """Build a 202 response with ``body`` plus ``statusUrl``, also sent as ``Location``."""
    response = jsonify({**body, "statusUrl": status_url})
    response.headers["Location"] = status_url
    return response, 202


def start_run(state: TriggerOutputsState, extension: TriggerOutputs, task_id: str) -> str:
    """Trigger ``task_id`` with the request's JSON body and return the run id."""
    payload = read_json_object(state.config.max_payload_size)
    tags = request_tags(extension)

    run_id = state.client.trigger(task_id, payload, tags=tags or None)

    logger.info("Started run %s of task %s.", run_id, task_id)
    return run_id


def read_task_run(
    state: TriggerOutputsState, extension: TriggerOutputs, route: TaskRoute, task_id: str
) -> Response:
    """Build the GET response of a single-task route.

    With ``format=raw`` the response is the stored output packet itself, and
    with ``format=redirect`` a 307 to a presigned URL of it.
    """
    run_id = read_run_id("runId")
    if route.include_output:
        output_format = read_output_format(allow_redirect=state.config.allow_redirect)
    else:
        output_format = "json"
    cached = None
    if output_format != "json":
        cached = state.cache.get(state.cache.key(run_id, "output"))
    # A redirect hands the client a presigned URL, and the URL in a cached
    # run may have expired, so it needs the run as retrieved just now. A
    # cached packet is sent directly instead.
    fresh = output_format == "redirect" and cached is None
    run = load_checked_run(state, extension, route.name, run_id, task_id, fresh=fresh)

    if output_format != "json":
        return packet_response(
            run,
            "output",
            reader=state.reader,
            cached=cached,
            redirect=output_format == "redirect",
        )

    result = state.reader.load_result(run, include_output=route.include_output, json_text=True)

    return json_response(result_to_json(result), result.output_json)


def error_response(
    status: int, code: str, message: str, *, field: str | None = None
) -> tuple[Response, int]:
    """Build the JSON error response that every route returns."""
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field

    return jsonify(body), status


def _disable_caching(response: Response) -> Response:
    # Run data may be private to one user, so shared caches must not keep it.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _handle_package_error(error: TriggerOutputsError) -> tuple[Response, int]:
    if error.http_status >= 500:
        logger.error(
            "%s %s failed for run %s: %s (upstream status %s). %s",
            request.method,
            request.endpoint,
            error.run_id,
            error.code,
            error.status_code,
            error.message,
        )

    return error_response(
        error.http_status, error.code, error.message, field=getattr(error, "field", None)
    )


def _handle_http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    code = _HTTP_ERROR_CODES.get(status) or error.name.lower().replace(" ", "_")
    response, status = error_response(status, code, error.description or error.name)

    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)

    return response, status


def _handle_unexpected_error(error: Exception) -> tuple[Response, int]:
    logger.exception("%s %s failed with an unexpected error.", request.method, request.endpoint)
    return error_response(
        500,
        "internal_error",
        "The server failed to handle the request. The error has been logged.",
    )
