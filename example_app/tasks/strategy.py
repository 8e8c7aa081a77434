"""The ai-strategy task: turn an audit into a prioritised plan.

The plan comes from rules over the audit's findings, not from a language
model, so the task runs offline and gives the same plan for the same audit.
A deployment on Trigger.dev can put a model behind the same task id; the
output shape is what the example app's page reads.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .audit import KIND_LABELS, SEVERITY, SEVERITY_WEIGHT, run_audit, scale_progress
from .scope import ProgressCallback, SiteScope, ignore_progress, read_payload

#: Action, reason and effort for each kind of finding.
PLAYBOOK: dict[str, dict[str, str]] = {
    "broken_link": {
        "action": "Fix or remove the links to pages that do not exist, or redirect those URLs.",
        "why": "Broken links send visitors and crawlers to error pages and waste crawl budget.",
        "effort": "low",
    },
    "broken_image": {
        "action": "Restore the missing image files or remove the references to them.",
        "why": "A missing image leaves a hole in the page and a failed request on every view.",
        "effort": "low",
    },
    "missing_title": {
        "action": "Write a unique, descriptive <title> for every page that has none.",
        "why": "The title is the headline of a search result; without it engines guess one.",
        "effort": "low",
    },
    "duplicate_title": {
        "action": "Give each page its own title that names what only that page covers.",
        "why": "Pages with the same title compete with each other in search results.",
        "effort": "medium",
    },
    "missing_description": {
        "action": "Add a meta description of one or two sentences that summarises the page.",
        "why": "Search engines show the description under the title; a good one earns clicks.",
        "effort": "low",
    },
    "duplicate_description": {
        "action": "Rewrite shared meta descriptions so each one matches its own page.",
        "why": "A description copied across pages tells readers nothing about the page.",
        "effort": "medium",
    },
    "thin_page": {
        "action": "Expand thin pages with useful content, or merge them into related pages.",
        "why": "Pages with very little text rarely rank well and make the site look unfinished.",
        "effort": "high",
    },
    "missing_alt": {
        "action": 'Add alt text that describes each informative image; use alt="" for decoration.',
        "why": "Screen reader users depend on alt text, and image search reads it too.",
        "effort": "low",
    },
    "missing_h1": {
        "action": "Give every page one <h1> that states its topic.",
        "why": "The main heading tells readers and assistive technology what the page is about.",
        "effort": "low",
    },
    "multiple_h1": {
        "action": "Keep one <h1> per page and turn the others into <h2> sections.",
        "why": "One main heading per page keeps the outline clear.",
        "effort": "low",
    },
    "long_title": {
        "action": "Shorten titles to about 60 characters, keeping the key words first.",
        "why": "Search results cut long titles, hiding their end.",
        "effort": "low",
    },
    "long_description": {
        "action": "Shorten meta descriptions to about 160 characters.",
        "why": "Search results cut long descriptions mid-sentence.",
        "effort": "low",
    },
}

EFFORT_COST = {"low": 1, "medium": 2, "high": 3}
MAX_PAGES_LISTED = 10


def group_findings(findings: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Return the distinct page URLs of the findings, per kind."""
    pages: dict[str, list[str]] = defaultdict(list)
    for finding in findings:
        if finding["url"] not in pages[finding["kind"]]:
            pages[finding["kind"]].append(finding["url"])
    return pages


def build_strategy(audit: dict[str, Any], analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build prioritised recommendations from an audit result.

    Each kind of finding becomes one recommendation. Its priority score is
    the severity weight times the share of audited pages affected, scaled to
    0..100, divided by the effort, so cheap fixes of widespread, severe
    problems come first. Recommendations are then placed in three phases:
    ``now`` (high severity or a score of 20 or more), ``next`` and ``later``.

    :param audit: the output of the site-audit or smart-audit task.
    :param analysis: optionally the output of the content-analysis task,
        which adds a readability recommendation when the text is hard to read.
    :raises ValueError: if ``audit`` has no ``findings`` list.
    """
    findings = audit.get("findings") if isinstance(audit, dict) else None
    if not isinstance(findings, list):
        raise ValueError("The ai-strategy task needs an audit with a 'findings' list.")
    page_count = max(1, int(audit.get("pagesAudited") or 1))
    recommendations = []
    for kind, urls in group_findings(findings).items():
        if kind not in PLAYBOOK:
            continue
        severity = SEVERITY[kind]
        play = PLAYBOOK[kind]
        share = len(urls) / page_count
        score = round(
            100 * SEVERITY_WEIGHT[severity] * min(1.0, share * 5) / 3 / EFFORT_COST[play["effort"]],
            1,
        )
        recommendations.append(
            {
                "kind": kind,
                "title": KIND_LABELS[kind],
                "severity": severity,
                "effort": play["effort"],
                "pagesAffected": len(urls),
                "priorityScore": score,
                "action": play["action"],
                "why": play["why"],
                "pages": urls[:MAX_PAGES_LISTED],
            }
        )

    if analysis is not None:
        overall = analysis.get("overall", {}).get("readability", {})
        ease = overall.get("fleschReadingEase")
        if isinstance(ease, (int, float)) and ease < 60:
            recommendations.append(
                {
                    "kind": "readability",
                    "title": "Hard-to-read text",
                    "severity": "medium",
                    "effort": "high",
                    "pagesAffected": analysis.get("pagesAnalysed", 0),
                    "priorityScore": round(60 - ease, 1),
                    "action": "Use shorter sentences and plainer words in the analysed pages.",
                    "why": f"The text scores {ease} on the Flesch reading ease, where 60 to 70"
                    " is plain English.",
                    "pages": [],
                }
            )

    recommendations.sort(key=lambda item: (-item["priorityScore"], item["kind"]))
    for rank, item in enumerate(recommendations, start=1):
        item["priority"] = rank
        if item["severity"] == "high" or item["priorityScore"] >= 20:
            item["phase"] = "now"
        elif item["severity"] == "medium":
            item["phase"] = "next"
        else:
            item["phase"] = "later"
    plan = {
        phase: [item["title"] for item in recommendations if item["phase"] == phase]
        for phase in ("now", "next", "later")
    }
    return {
        "baseUrl": audit.get("baseUrl"),
        "generatedBy": "rules",
        "score": audit.get("score"),
        "pagesAudited": audit.get("pagesAudited"),
        "summary": summarize(audit, recommendations),
        "plan": plan,
        "recommendations": recommendations,
    }


def summarize(audit: dict[str, Any], recommendations: list[dict[str, Any]]) -> str:
    """Write a one-paragraph summary of the strategy."""
    if not recommendations:
        return f"No problems found on {audit.get('pagesAudited', 0)} pages; keep the site as it is."
    first = recommendations[0]
    quick = [item["title"].lower() for item in recommendations if item["effort"] == "low"][:3]
    text = (
        f"The site scores {audit.get('score')} out of 100 over {audit.get('pagesAudited')} pages."
        f" Start with: {first['title'].lower()} ({first['pagesAffected']} pages)."
    )
    if quick:
        text += f" Quick wins: {', '.join(quick)}."
    return text


def run_strategy(
    payload: Any, scope: SiteScope, report: ProgressCallback = ignore_progress
) -> dict[str, Any]:
    """Run the ai-strategy task.

    The payload is ``{"audit"?: <audit output>, "analysis"?: <analysis
    output>, "baseUrl"?, "maxPages"?}``. Without ``audit`` the task runs a
    smart audit of ``baseUrl`` first.
    """
    options = read_payload(payload, "ai-strategy")
    audit = options.get("audit")
    if audit is None:
        audit_options = {key: options[key] for key in ("baseUrl", "maxPages") if key in options}
        audit = run_audit(audit_options, scope, scale_progress(report, 0.0, 0.9), smart=True)
    report({"stage": "planning", "progress": 0.95})
    strategy = build_strategy(audit, options.get("analysis"))
    report({"stage": "done", "progress": 1.0})
    return strategy
