"""Local mode: the emulator, the six local tasks and the sample site.

Without ``TRIGGER_SECRET_KEY`` the example app starts everything it needs
in its own process, all bound to ``127.0.0.1``: the sample site, and the
Trigger.dev emulator with the six tasks registered. It also checks every
payload the page or a client posts, so a ``baseUrl`` outside the sample
site is rejected before a run starts.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request

from flask_trigger_outputs.emulator import Emulator, EmulatorServer

from .site_server import SampleSiteServer
from .tasks import SiteScope, make_local_tasks
from .tasks.content import MAX_PAGE_LIMIT
from .tasks.crawl import MAX_PAGES_LIMIT
from .tasks.scope import read_int

logger = logging.getLogger(__name__)

#: Outputs of at least this many bytes are offloaded, as Trigger.dev does
#: above 512 KB.
OUTPUT_OFFLOAD_THRESHOLD = 512 * 1024

#: Largest request body the payload check reads; larger bodies are left to
#: the extension, which rejects anything over its payload limit.
MAX_CHECKED_BODY = 3 * 1024 * 1024


@dataclass
class LocalServices:
    """The servers that local mode runs in background threads."""

    site: SampleSiteServer
    emulator: EmulatorServer
    scope: SiteScope

    def close(self) -> None:
        """Stop both servers and the emulator's task workers."""
        self.emulator.stop()
        self.site.stop()


def start_local_services() -> LocalServices:
    """Start the sample site and the emulator with the six tasks registered."""
    site = SampleSiteServer().start()
    try:
        scope = SiteScope(site.url)
        emulator = Emulator(offload_threshold=OUTPUT_OFFLOAD_THRESHOLD)
        emulator.register_tasks(make_local_tasks(scope))
        server = EmulatorServer(emulator).start()
    except BaseException:
        site.stop()
        raise
    return LocalServices(site=site, emulator=server, scope=scope)


def peek_json_body() -> Any:
    """Parse the request's JSON body and leave it readable for the view.

    Returns ``None`` for a body that is not JSON, has no ``Content-Length``,
    is too large or does not parse; the view reports those itself.
    """
    length = request.content_length
    if not request.is_json or length is None or length > MAX_CHECKED_BODY:
        return None
    data = request.stream.read(length)
    # Give the view a fresh stream over the same bytes; werkzeug's cached
    # ``stream`` property accepts assignment.
    request.stream = io.BytesIO(data)  # type: ignore[misc]
    try:
        return json.loads(data)
    except ValueError:
        return None


#: Numeric options of the local tasks, with the range each task accepts.
NUMERIC_OPTIONS = {
    "maxPages": (1, MAX_PAGES_LIMIT),
    "minWords": (0, 100_000),
    "limit": (1, MAX_PAGE_LIMIT),
}


class InvalidPayloadError(ValueError):
    """A posted payload that a local task would reject.

    :param field: the payload field at fault, such as ``"baseUrl"``.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_payload(scope: SiteScope, payload: Any) -> None:
    """Check a task payload before a run starts: its URLs against the sample
    site and its numeric options against their ranges.

    :raises InvalidPayloadError: naming the field and what was expected.
    """
    if not isinstance(payload, dict):
        return

    for field, (low, high) in NUMERIC_OPTIONS.items():
        if field in payload:
            try:
                read_int(payload, field, default=low, low=low, high=high)
            except ValueError as error:
                raise InvalidPayloadError(str(error), field=field) from None

    try:
        scope.resolve_base_url(payload)
    except ValueError as error:
        raise InvalidPayloadError(str(error), field="baseUrl") from None

    urls = payload.get("urls")
    if isinstance(urls, list):
        for url in urls:
            try:
                scope.check_url(url, field="urls[]")
            except ValueError as error:
                raise InvalidPayloadError(str(error), field="urls") from None


def install_payload_check(app: Flask, scope: SiteScope, blueprint_name: str) -> None:
    """Reject POSTs to the extension's routes whose URLs leave the sample site
    or whose numeric options are out of range.

    The response has the extension's error shape: 400 with
    ``{"error": "invalid_request", "message": ..., "field": ...}``.
    """

    @app.before_request
    def reject_outside_urls() -> tuple[Response, int] | None:
        if request.method != "POST" or request.blueprint != blueprint_name:
            return None
        try:
            check_payload(scope, peek_json_body())
        except InvalidPayloadError as error:
            logger.info("Rejected a %s payload: invalid %s.", request.path, error.field)
            body = {"error": "invalid_request", "message": str(error), "field": error.field}
            return jsonify(body), 400
        return None
