"""The JSON shapes the blueprint returns, with camelCase keys.

docs/routes.md and openapi.json describe each field; keep the three in step.
"""

from __future__ import annotations

from typing import Any

from .reader import RunResult
from .runs import Run


def run_to_json(run: Run) -> dict[str, Any]:
    """Describe a run without its output: id, task, status, the status
    booleans, metadata, timestamps and the error of a failed run."""
    error = None
    if run.error is not None:
        error = {"name": run.error.name, "message": run.error.message}

    return {
        "runId": run.id,
        "taskIdentifier": run.task_identifier,
        "status": run.status,
        "isQueued": run.is_queued,
        "isExecuting": run.is_executing,
        "isWaiting": run.is_waiting,
        "isCompleted": run.is_completed,
        "isSuccess": run.is_success,
        "isFailed": run.is_failed,
        "isCancelled": run.is_cancelled,
        "isFinished": run.is_finished,
        "metadata": run.metadata,
        "createdAt": run.created_at,
        "updatedAt": run.updated_at,
        "startedAt": run.started_at,
        "finishedAt": run.finished_at,
        "error": error,
    }


def result_to_json(result: RunResult) -> dict[str, Any]:
    """Describe a run with its output size and, when the result contains it,
    its output.

    ``output`` is left out, rather than set to ``null``, when there is no
    output to return, because ``null`` is a valid output.
    """
    body = run_to_json(result.run)
    body["outputSize"] = result.output_size
    body["outputOffloaded"] = result.output_offloaded

    # A result with output_json leaves the output to the response, which
    # inserts that JSON text as is.
    if result.has_output and result.output_json is None:
        body["output"] = result.output

    return body
