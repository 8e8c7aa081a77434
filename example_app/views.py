"""The example app's own views: the page at ``/`` and the run reports.

The report views read outputs with :func:`get_run_output`, the helper any
view of an app can call, whether the output came inline or offloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template

from flask_trigger_outputs import RunNotFoundError, TriggerOutputsError, get_run_output
from flask_trigger_outputs.extension import get_state

from .summaries import summarize_output

blueprint = Blueprint("example", __name__, static_folder="static", template_folder="templates")


@dataclass(frozen=True)
class Card:
    """One task card of the page."""

    key: str
    title: str
    task_setting: str
    route: str
    description: str
    kind: str = "single"
    poll_route: str | None = None
    accepts_base_url: bool = True
    accepts_max_pages: bool = True
    #: Setting of a second task that the route starts after the first.
    then_task_setting: str | None = None
    #: Text of the start button, "Start <title in lower case>" by default.
    button_label: str | None = None


CARDS = (
    Card(
        "crawl",
        "Site crawl",
        "task_crawl",
        "/api/crawl",
        "Follows every link of the site and records each page. Its output is large, so"
        " Trigger.dev offloads it to object storage.",
        poll_route="/api/crawl/status",
    ),
    Card(
        "site-audit",
        "Site audit",
        "task_site_audit",
        "/api/site-audit",
        "Crawls the site and reports missing titles and descriptions, duplicate titles, thin"
        " pages, broken links and images.",
    ),
    Card(
        "audit",
        "Smart audit",
        "task_audit",
        "/api/audit",
        "The site audit plus content checks, a severity for every finding and a ranked list"
        " of issues.",
    ),
    Card(
        "ai-strategy",
        "AI strategy",
        "task_ai_strategy",
        "/api/ai-strategy",
        "Audits the site and turns the findings into prioritised recommendations.",
        button_label="Start AI strategy",
    ),
    Card(
        "content",
        "Content analysis",
        "task_content_extraction",
        "/api/content/analyze",
        "Extracts the text and headings of a few pages, then a second task computes keyword"
        " and readability statistics.",
        kind="chain",
        then_task_setting="task_content_analysis",
        accepts_max_pages=False,
    ),
)


def task_ids() -> set[str]:
    """Return the task identifiers the app's routes use."""
    config = get_state().config
    return {
        config.task_content_extraction,
        config.task_content_analysis,
        config.task_crawl,
        config.task_site_audit,
        config.task_ai_strategy,
        config.task_audit,
    }


@blueprint.get("/")
def index() -> str:
    state = get_state()
    prefix = state.config.url_prefix.rstrip("/")
    cards = [
        {
            "key": card.key,
            "title": card.title,
            "button_label": card.button_label or f"Start {card.title.lower()}",
            "task_id": getattr(state.config, card.task_setting),
            "then_task_id": (
                getattr(state.config, card.then_task_setting) if card.then_task_setting else None
            ),
            "route": prefix + card.route,
            "start_url": prefix + card.route,
            "poll_url": prefix + (card.poll_route or card.route),
            "final_url": prefix + card.route,
            "result_url": "/reports",
            "kind": card.kind,
            "description": card.description,
            "accepts_base_url": card.accepts_base_url,
            "accepts_max_pages": card.accepts_max_pages,
        }
        for card in CARDS
    ]
    local = current_app.extensions.get("example_app")
    return render_template(
        "index.html",
        cards=cards,
        local_mode=local is not None,
        site_url=local.site.url if local is not None else None,
        api_url=state.config.api_url,
    )


def error_response(error: TriggerOutputsError) -> tuple[Response, int]:
    return jsonify({"error": error.code, "message": error.message}), error.http_status


def load_report_output(run_id: str) -> tuple[str, Any]:
    """Check that the run belongs to one of the app's tasks and read its output.

    A run of any other task gets the same 404 as an unknown run, so these
    views cannot read data that the routes would not show.
    """
    run = get_state().reader.get_run(run_id)
    if run.task_identifier not in task_ids():
        raise RunNotFoundError(f"Run {run_id} was not found.", run_id=run_id)
    return run.task_identifier, get_run_output(run_id, as_json=True)


@blueprint.get("/reports/<run_id>/summary")
def report_summary(run_id: str) -> Response | tuple[Response, int]:
    """Summarise the output of a finished run for the page."""
    try:
        task_id, output = load_report_output(run_id)
    except TriggerOutputsError as error:
        return error_response(error)
    return jsonify(
        {
            "runId": run_id,
            "taskIdentifier": task_id,
            "summary": summarize_output(task_id, output),
        }
    )


@blueprint.get("/reports/<run_id>/output.json")
def report_output(run_id: str) -> Response | tuple[Response, int]:
    """Send the whole output of a finished run as a JSON file download."""
    try:
        _task_id, output = load_report_output(run_id)
    except TriggerOutputsError as error:
        return error_response(error)
    response = current_app.response_class(
        json.dumps(output, indent=2) + "\n", mimetype="application/json"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{run_id}.json"'
    return response
