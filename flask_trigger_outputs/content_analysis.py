"""The reading of ``/api/content/analyze``, which chains two runs: an
extraction run started by POST, then an analysis run of its output that the
first GET after the extraction succeeded starts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .access import request_tags
from .errors import PayloadTooLargeError, TriggerOutputsError
from .request_body import read_optional_run_id, read_run_id
from .run_loading import load_checked_run
from .runs import Run
from .serialize import result_to_json, run_to_json
from .stream import json_response

if TYPE_CHECKING:
    from flask import Response

    from .extension import TriggerOutputs, TriggerOutputsState

logger = logging.getLogger(__name__)

#: Endpoint name of ``/api/content/analyze``, also passed to ``authorize``.
CONTENT_ANALYZE = "content_analyze"


class AnalysisNotStartedError(TriggerOutputsError):
    """The extraction run succeeded but its output cannot be the analysis
    run's payload, because it is larger than a trigger payload may be.
    Polling again does not help."""

    code = "analysis_not_started"
    http_status = 409


def read_content_analysis(state: TriggerOutputsState, extension: TriggerOutputs) -> Response:
    """Build the GET response of ``/api/content/analyze``.

    Once the extraction run succeeded, the analysis run is started with the
    extraction output as payload. The idempotency key is derived from the
    extraction run id, so however many polls arrive, and however they
    interleave, Trigger.dev starts a single analysis run and returns its id
    to every poll. The analysis run is also tagged ``extraction:<id>``, and a
    poll naming an ``analysisRunId`` without that tag gets 404, so a client
    cannot pair an extraction with an unrelated analysis.
    """
    config = state.config
    extraction_id = read_run_id("extractionRunId")
    analysis_id = read_optional_run_id("analysisRunId")

    extraction = load_checked_run(
        state, extension, CONTENT_ANALYZE, extraction_id, config.task_content_extraction
    )
    link_tag = f"extraction:{extraction_id}"

    if analysis_id is None and extraction.is_success:
        analysis_id = start_analysis(state, extension, extraction, link_tag)

    if analysis_id is None:
        return json_response(content_analysis_body(extraction, None, None))

    analysis = load_checked_run(
        state,
        extension,
        CONTENT_ANALYZE,
        analysis_id,
        config.task_content_analysis,
        required_tags=(link_tag,),
    )

    result = state.reader.load_result(analysis, json_text=True)

    return json_response(
        content_analysis_body(extraction, analysis, result_to_json(result)), result.output_json
    )


def start_analysis(
    state: TriggerOutputsState, extension: TriggerOutputs, extraction: Run, link_tag: str
) -> str:
    """Start the analysis of a successful extraction run, or find the one
    already started, and return its run id.

    The payload is the extraction output with its types when it was
    offloaded, and its JSON form when Trigger.dev returned it inline.
    """
    task_id = state.config.task_content_analysis
    extraction_id = extraction.id
    output = state.reader.load_packet(extraction, "output", as_json=False).value
    tags = [*request_tags(extension), link_tag]

    try:
        run_id = state.client.trigger(
            task_id,
            output,
            idempotency_key=f"content-analysis:{extraction_id}",
            tags=tags,
        )
    except PayloadTooLargeError as error:
        raise AnalysisNotStartedError(
            f"The output of extraction run {extraction_id} is {error.size} bytes, over the"
            f" {error.limit}-byte limit of a trigger payload, so the analysis run cannot start.",
            run_id=extraction_id,
            task_id=task_id,
        ) from error

    logger.info("Started or found analysis run %s for extraction run %s.", run_id, extraction_id)
    return run_id


def content_analysis_body(
    extraction: Run, analysis: Run | None, analysis_body: dict[str, Any] | None
) -> dict[str, Any]:
    """Combine the extraction and analysis runs into one response body.

    The top-level status fields follow the extraction run until it succeeds
    and the analysis run after that.
    """
    extraction_body = run_to_json(extraction)

    if analysis is None or analysis_body is None:
        return {
            "stage": "extraction",
            "status": extraction.status,
            "isFinished": extraction.is_finished,
            "isSuccess": False,
            "isFailed": extraction.is_failed,
            "isCancelled": extraction.is_cancelled,
            "extraction": extraction_body,
            "analysis": None,
            "analysisRunId": None,
            "outputSize": None,
            "outputOffloaded": None,
            "error": extraction_body["error"],
            "metadata": extraction.metadata,
        }

    body = {
        "stage": "analysis",
        "status": analysis.status,
        "isFinished": analysis.is_finished,
        "isSuccess": analysis.is_success,
        "isFailed": analysis.is_failed,
        "isCancelled": analysis.is_cancelled,
        "extraction": extraction_body,
        "analysis": run_to_json(analysis),
        "analysisRunId": analysis.id,
        "outputSize": analysis_body["outputSize"],
        "outputOffloaded": analysis_body["outputOffloaded"],
        "error": analysis_body["error"],
        "metadata": analysis.metadata,
    }
    if "output" in analysis_body:
        body["output"] = analysis_body["output"]

    return body
