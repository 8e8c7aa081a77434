"""Tasks and app factories shared by the tests of the extension, its routes,
its CLI and its OpenAPI document.

The tasks run on the emulator's worker threads. Each returns a small output
by default, and an output above the emulator's offload threshold when the
payload contains ``"large": true``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_trigger_outputs.emulator import EmulatorServer, TaskContext
from flask_trigger_outputs.extension import TriggerOutputs

#: Size of a large output: above the emulator's default offload threshold
#: (512 KiB), so the API returns a presigned URL instead of the data.
LARGE_OUTPUT_SIZE = 600 * 1024

#: Task identifiers of the routes with the default configuration.
ROUTE_TASKS = {
    "/api/crawl": "site-crawl",
    "/api/site-audit": "site-audit",
    "/api/ai-strategy": "ai-strategy",
    "/api/audit": "smart-audit",
}


class TaskFailure(Exception):
    """The error a task raises when its payload contains ``"fail": true``."""


def report_task(payload: Any, context: TaskContext) -> Any:
    """Return a summary of the payload, optionally large, or fail."""
    context.set_metadata({"progress": 1.0, "step": "done"})

    if payload.get("fail"):
        raise TaskFailure("The site did not respond.")

    output: dict[str, Any] = {"task": context.task_id, "url": payload.get("url")}
    if payload.get("large"):
        output["html"] = "x" * LARGE_OUTPUT_SIZE
    if "echo" in payload:
        output["echo"] = payload["echo"]

    return output


def extract_content(payload: Any, context: TaskContext) -> Any:
    """Return the text to analyze, repeated ``repeat`` times, or fail."""
    if payload.get("fail"):
        raise TaskFailure("The page could not be fetched.")

    return {"text": payload["text"] * payload.get("repeat", 1), "url": payload.get("url")}


def analyze_content(payload: Any, context: TaskContext) -> Any:
    """Count the words of an extraction output."""
    context.update_metadata(progress=1.0)
    return {"words": len(payload["text"].split()), "url": payload.get("url")}


def register_tasks(server: EmulatorServer) -> None:
    """Register the tasks of the six routes on the emulator."""
    emulator = server.emulator
    for task_id in ROUTE_TASKS.values():
        emulator.register_task(task_id, report_task)
    emulator.register_task("content-extraction", extract_content)
    emulator.register_task("content-analysis", analyze_content)


def make_app(server: EmulatorServer, *, name: str = "test_app", **options: Any) -> Flask:
    """Create an app with the extension configured against ``server``.

    Poll coalescing is off unless a test sets ``TRIGGER_OUTPUTS_POLL_COALESCE``.

    Keyword arguments in upper case are app config keys; the others go to
    :class:`TriggerOutputs`.
    """
    config = {key: value for key, value in options.items() if key.isupper()}
    extension_options = {key: value for key, value in options.items() if not key.isupper()}

    app = Flask(name)
    app.config.update(
        {
            "TESTING": True,
            "TRIGGER_API_URL": server.url,
            "TRIGGER_SECRET_KEY": server.secret_key,
            # Tests poll right after waiting for a run to finish. With polls
            # coalesced, that poll could get the state from before the wait.
            "TRIGGER_OUTPUTS_POLL_COALESCE": 0.0,
            **config,
        }
    )
    TriggerOutputs(app, **extension_options)
    return app
