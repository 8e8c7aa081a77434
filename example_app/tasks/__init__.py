"""Python implementations of the six tasks, for local mode.

On Trigger.dev the tasks are TypeScript functions deployed to a project. In
local mode the example app registers these functions with the emulator
under the same task ids instead, so every route works without an account.
Each task reads the bundled sample site over HTTP and reports its progress
through the run metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .audit import run_audit
from .content import analyze_extraction, run_extraction
from .crawl import run_crawl
from .scope import OutOfScopeError, ProgressCallback, SiteScope, read_payload
from .strategy import run_strategy

__all__ = [
    "TASK_IDS",
    "OutOfScopeError",
    "SiteScope",
    "make_local_tasks",
]

TASK_IDS = (
    "content-extraction",
    "content-analysis",
    "site-crawl",
    "site-audit",
    "ai-strategy",
    "smart-audit",
)


class MetadataContext(Protocol):
    """The part of the emulator's task context that the tasks use."""

    def update_metadata(self, **values: Any) -> None: ...


#: A task as the emulator runs it: ``fn(payload, ctx) -> output``.
TaskFunction = Callable[[Any, Any], Any]

#: Returns the output of a finished run, given its id.
OutputLoader = Callable[[str], Any]


def progress_reporter(context: MetadataContext) -> ProgressCallback:
    """Return a progress callback that merges each update into the run metadata."""

    def report(update: dict[str, Any]) -> None:
        context.update_metadata(**update)

    return report


def make_local_tasks(
    scope: SiteScope, *, load_output: OutputLoader | None = None
) -> dict[str, TaskFunction]:
    """Return the six tasks by task id, confined to the site of ``scope``.

    :param scope: the site the tasks may read; any other URL in a payload
        fails the run with an :class:`OutOfScopeError` naming the URL.
    :param load_output: reads the output of another run. The content-analysis
        task uses it when its payload names the extraction run
        (``{"extractionRunId": ...}``) instead of carrying the extraction.
    """

    def content_extraction(payload: Any, context: MetadataContext) -> Any:
        return run_extraction(payload, scope, progress_reporter(context))

    def content_analysis(payload: Any, context: MetadataContext) -> Any:
        options = read_payload(payload, "content-analysis")
        report = progress_reporter(context)
        report({"stage": "analysing", "progress": 0.1})
        extraction = options.get("extraction")
        if extraction is None and "pages" in options:
            extraction = options
        run_id = options.get("extractionRunId")
        if extraction is None and isinstance(run_id, str) and load_output is not None:
            extraction = load_output(run_id)
        if extraction is None:
            raise ValueError(
                "The content-analysis task needs 'extraction' (the output of content-extraction)"
                " or 'extractionRunId' in its payload."
            )
        result = analyze_extraction(extraction)
        if isinstance(run_id, str):
            result["extractionRunId"] = run_id
        report({"stage": "done", "progress": 1.0})
        return result

    def site_crawl(payload: Any, context: MetadataContext) -> Any:
        return run_crawl(payload, scope, progress_reporter(context))

    def site_audit(payload: Any, context: MetadataContext) -> Any:
        return run_audit(payload, scope, progress_reporter(context), smart=False)

    def smart_audit(payload: Any, context: MetadataContext) -> Any:
        return run_audit(payload, scope, progress_reporter(context), smart=True)

    def ai_strategy(payload: Any, context: MetadataContext) -> Any:
        return run_strategy(payload, scope, progress_reporter(context))

    return {
        "content-extraction": content_extraction,
        "content-analysis": content_analysis,
        "site-crawl": site_crawl,
        "site-audit": site_audit,
        "ai-strategy": ai_strategy,
        "smart-audit": smart_audit,
    }
