"""Turn a task's output into the short summary that the page shows."""

from __future__ import annotations

from typing import Any

from .tasks.audit import KIND_LABELS


def summarize_output(task_id: str, output: Any) -> dict[str, Any]:
    """Summarise the output of one of the six tasks.

    :param task_id: the task identifier of the run, which decides how the
        output is read.
    :returns: ``{"headline": str, "facts": [{"label", "value"}], "findings":
        [{"kind", "label", "count"}]}``. ``findings`` is empty for tasks
        that report none.
    """
    if not isinstance(output, dict):
        return {
            "headline": f"The {task_id} run returned {type(output).__name__}.",
            "facts": [],
            "findings": [],
        }
    summarize = SUMMARIZERS.get(task_id, summarize_unknown)
    return summarize(output)


def fact(label: str, value: Any) -> dict[str, Any]:
    return {"label": label, "value": value}


def findings_table(by_kind: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"kind": kind, "label": KIND_LABELS.get(kind, kind), "count": count}
        for kind, count in by_kind.items()
    ]


def summarize_crawl(output: dict[str, Any]) -> dict[str, Any]:
    pages = output.get("pages", [])
    statuses = output.get("statusCounts", {})
    images = output.get("images", [])
    broken = sum(1 for page in pages if page.get("status", 0) == 0 or page.get("status", 0) >= 400)
    crawled = output.get("pagesCrawled", len(pages))
    return {
        "headline": f"Crawled {crawled} pages of {output.get('baseUrl')}.",
        "facts": [
            fact("Pages crawled", crawled),
            fact("Pages answering 200", statuses.get("200", 0)),
            fact("Broken URLs (error status)", broken),
            fact("Images checked", len(images)),
            fact("External links (not followed)", len(output.get("externalLinks", []))),
            fact("Page limit reached", "yes" if output.get("limitReached") else "no"),
        ],
        "findings": [],
    }


def summarize_audit(output: dict[str, Any]) -> dict[str, Any]:
    audited = output.get("pagesAudited")
    facts = [
        fact("Pages audited", audited),
        fact("Findings", output.get("findingCount", len(output.get("findings", [])))),
        fact("Health score", f"{output.get('score')} / 100"),
    ]
    severities = output.get("severityCounts")
    if severities:
        facts += [
            fact(f"{level.capitalize()} severity", severities.get(level, 0))
            for level in ("high", "medium", "low")
        ]
    return {
        "headline": f"Audited {audited} pages: score {output.get('score')} out of 100.",
        "facts": facts,
        "findings": findings_table(output.get("findingsByKind", {})),
    }


def summarize_strategy(output: dict[str, Any]) -> dict[str, Any]:
    recommendations = output.get("recommendations", [])
    return {
        "headline": output.get("summary") or "No recommendations.",
        "facts": [
            fact(
                f"{item['priority']}. {item['title']}",
                f"{item['pagesAffected']} pages, do it {item['phase']}",
            )
            for item in recommendations[:6]
        ],
        "findings": [],
    }


def summarize_extraction(output: dict[str, Any]) -> dict[str, Any]:
    return {
        "headline": f"Extracted {output.get('pageCount')} pages.",
        "facts": [fact("Pages", output.get("pageCount")), fact("Words", output.get("totalWords"))],
        "findings": [],
    }


def summarize_analysis(output: dict[str, Any]) -> dict[str, Any]:
    overall = output.get("overall", {})
    stats = overall.get("readability", {})
    top = ", ".join(item["keyword"] for item in overall.get("keywords", [])[:5])
    return {
        "headline": (
            f"Analysed {output.get('pagesAnalysed')} pages: Flesch reading ease"
            f" {stats.get('fleschReadingEase')} ({stats.get('readingLevel')})."
        ),
        "facts": [
            fact("Pages analysed", output.get("pagesAnalysed")),
            fact("Words", stats.get("words")),
            fact("Flesch reading ease", stats.get("fleschReadingEase")),
            fact("Flesch-Kincaid grade", stats.get("fleschKincaidGrade")),
            fact("Reading time (minutes)", overall.get("readingTimeMinutes")),
            fact("Top keywords", top),
        ],
        "findings": [],
    }


def summarize_unknown(output: dict[str, Any]) -> dict[str, Any]:
    return {
        "headline": "The run finished.",
        "facts": [fact("Top-level keys", ", ".join(sorted(output)))],
        "findings": [],
    }


SUMMARIZERS = {
    "site-crawl": summarize_crawl,
    "site-audit": summarize_audit,
    "smart-audit": summarize_audit,
    "ai-strategy": summarize_strategy,
    "content-extraction": summarize_extraction,
    "content-analysis": summarize_analysis,
}
