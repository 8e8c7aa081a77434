"""The site-audit and smart-audit tasks: find problems in a crawled site.

Both tasks crawl the site first (see :mod:`.crawl`) and then check the
recorded pages. The site audit reports the basic findings. The smart audit
adds content checks, a severity for every finding, a ranked list of issues
and counts per site section.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any
from urllib.parse import urlsplit

from .crawl import DEFAULT_MAX_PAGES, MAX_PAGES_LIMIT, crawl_site
from .scope import ProgressCallback, SiteScope, ignore_progress, read_int, read_payload

#: Pages with fewer words than this in their main content are thin.
DEFAULT_MIN_WORDS = 100

#: Maximum title and description lengths that search results show in full, in characters.
MAX_TITLE_LENGTH = 60
MAX_DESCRIPTION_LENGTH = 160

BASIC_KINDS = (
    "missing_title",
    "missing_description",
    "duplicate_title",
    "thin_page",
    "broken_link",
    "broken_image",
    "missing_alt",
)
SMART_KINDS = (
    "duplicate_description",
    "missing_h1",
    "multiple_h1",
    "long_title",
    "long_description",
)

SEVERITY = {
    "broken_link": "high",
    "missing_title": "high",
    "broken_image": "high",
    "duplicate_title": "medium",
    "missing_description": "medium",
    "thin_page": "medium",
    "missing_h1": "medium",
    "missing_alt": "low",
    "multiple_h1": "low",
    "duplicate_description": "low",
    "long_title": "low",
    "long_description": "low",
}
SEVERITY_WEIGHT = {"high": 3, "medium": 2, "low": 1}

#: Human-readable names of the finding kinds, used in summaries.
KIND_LABELS = {
    "missing_title": "Missing title",
    "missing_description": "Missing meta description",
    "duplicate_title": "Duplicate title",
    "thin_page": "Thin page",
    "broken_link": "Broken link",
    "broken_image": "Broken image",
    "missing_alt": "Image without alt text",
    "duplicate_description": "Duplicate meta description",
    "missing_h1": "Missing h1 heading",
    "multiple_h1": "More than one h1 heading",
    "long_title": "Title too long",
    "long_description": "Meta description too long",
}


def is_broken(status: int) -> bool:
    return status == 0 or status >= 400


def html_pages(crawl: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the crawled pages that were fetched as HTML."""
    return [page for page in crawl["pages"] if page.get("status") == 200 and "wordCount" in page]


def find_duplicates(pages: list[dict[str, Any]], field: str) -> dict[str, list[str]]:
    """Group page URLs by the value of ``field``; keep the values that several pages share."""
    groups: dict[str, list[str]] = defaultdict(list)
    for page in pages:
        if page.get(field):
            groups[page[field]].append(page["url"])
    return {value: urls for value, urls in groups.items() if len(urls) > 1}


def basic_findings(crawl: dict[str, Any], *, min_words: int) -> list[dict[str, Any]]:
    """Check a crawl for the basic findings, in page order."""
    pages = html_pages(crawl)
    status_by_url = {page["url"]: page["status"] for page in crawl["pages"]}
    image_status = {image["url"]: image["status"] for image in crawl.get("images", [])}
    duplicate_titles = find_duplicates(pages, "title")
    findings: list[dict[str, Any]] = []

    def add(kind: str, url: str, detail: str, **extra: Any) -> None:
        findings.append({"kind": kind, "url": url, "detail": detail, **extra})

    for page in pages:
        url = page["url"]
        if not page.get("title"):
            add("missing_title", url, "The page has no <title>.")
        elif page["title"] in duplicate_titles:
            others = [other for other in duplicate_titles[page["title"]] if other != url]
            add(
                "duplicate_title",
                url,
                f"The title {page['title']!r} is also used by {len(others)} other page(s).",
                duplicates=others,
            )
        if not page.get("description"):
            add("missing_description", url, "The page has no meta description.")
        if page["wordCount"] < min_words:
            add(
                "thin_page",
                url,
                f"The page has {page['wordCount']} words of content; {min_words} is the minimum.",
                wordCount=page["wordCount"],
            )
        for target in dict.fromkeys(page.get("links", [])):
            status = status_by_url.get(target)
            if status is not None and is_broken(status):
                add("broken_link", url, f"The link to {target} returns {status}.", target=target)
        for image in page.get("images", []):
            status = image_status.get(image["src"]) if image["src"] else 0
            if status is not None and is_broken(status):
                add(
                    "broken_image",
                    url,
                    f"The image {image['src']} returns {status}.",
                    target=image["src"],
                )
            if image.get("alt") is None:
                add(
                    "missing_alt",
                    url,
                    f"The image {image['src']} has no alt attribute.",
                    target=image["src"],
                )
    return findings


def smart_findings(crawl: dict[str, Any]) -> list[dict[str, Any]]:
    """Check a crawl for the content findings that only the smart audit reports."""
    pages = html_pages(crawl)
    duplicate_descriptions = find_duplicates(pages, "description")
    findings: list[dict[str, Any]] = []
    for page in pages:
        url = page["url"]
        description = page.get("description")
        if description in duplicate_descriptions:
            others = [other for other in duplicate_descriptions[description] if other != url]
            findings.append(
                {
                    "kind": "duplicate_description",
                    "url": url,
                    "detail": f"The meta description is also used by {len(others)} other page(s).",
                    "duplicates": others,
                }
            )
        h1_count = sum(1 for heading in page.get("headings", []) if heading["level"] == 1)
        if h1_count == 0:
            findings.append({"kind": "missing_h1", "url": url, "detail": "The page has no <h1>."})
        elif h1_count > 1:
            findings.append(
                {
                    "kind": "multiple_h1",
                    "url": url,
                    "detail": f"The page has {h1_count} <h1> headings.",
                }
            )
        title = page.get("title") or ""
        if len(title) > MAX_TITLE_LENGTH:
            findings.append(
                {
                    "kind": "long_title",
                    "url": url,
                    "detail": f"The title has {len(title)} characters; search results show about"
                    f" {MAX_TITLE_LENGTH}.",
                }
            )
        if description and len(description) > MAX_DESCRIPTION_LENGTH:
            findings.append(
                {
                    "kind": "long_description",
                    "url": url,
                    "detail": f"The meta description has {len(description)} characters; search"
                    f" results show about {MAX_DESCRIPTION_LENGTH}.",
                }
            )
    return findings


def count_by_kind(findings: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, int]:
    """Count findings per kind, listing every checked kind, even with a count of 0."""
    counts = Counter(finding["kind"] for finding in findings)
    return {kind: counts.get(kind, 0) for kind in kinds}


def health_score(findings: list[dict[str, Any]], page_count: int) -> int:
    """Score the site from 0 to 100: 100 minus the severity-weighted findings per page.

    One high-severity finding on every page costs 30 points, so the score
    distinguishes a site with a few problems from one with problems everywhere.
    """
    if page_count == 0:
        return 0
    weight = sum(SEVERITY_WEIGHT[SEVERITY[finding["kind"]]] for finding in findings)
    return max(0, round(100 - 10 * weight / page_count))


def section_of(url: str, base_url: str) -> str:
    """Return the first path segment below the base URL, or ``"(root)"``."""
    relative = urlsplit(url).path[len(urlsplit(base_url).path) :]
    return relative.split("/", 1)[0] if "/" in relative else "(root)"


def audit_crawl(
    crawl: dict[str, Any], *, min_words: int = DEFAULT_MIN_WORDS, smart: bool = False
) -> dict[str, Any]:
    """Audit a crawl result, as returned by :func:`.crawl.crawl_site`.

    :returns: a dict with ``baseUrl``, ``pagesCrawled``, ``pagesAudited``,
        ``findings`` (each with ``kind``, ``url`` and ``detail``; ``severity``
        too in a smart audit), ``findingsByKind`` and ``score``. A smart audit
        adds ``severityCounts``, ``issues`` (one entry per kind found, most
        important first) and ``sections`` (finding counts per site section).
    """
    pages = html_pages(crawl)
    findings = basic_findings(crawl, min_words=min_words)
    kinds = BASIC_KINDS
    if smart:
        findings += smart_findings(crawl)
        kinds = BASIC_KINDS + SMART_KINDS
        for finding in findings:
            finding["severity"] = SEVERITY[finding["kind"]]
    by_kind = count_by_kind(findings, kinds)
    result: dict[str, Any] = {
        "baseUrl": crawl["baseUrl"],
        "pagesCrawled": crawl["pagesCrawled"],
        "pagesAudited": len(pages),
        "minWords": min_words,
        "findingsByKind": by_kind,
        "findingCount": len(findings),
        "score": health_score(findings, len(pages)),
        "findings": findings,
    }
    if not smart:
        return result

    result["severityCounts"] = dict(
        Counter(finding["severity"] for finding in findings).most_common()
    )
    affected: dict[str, set[str]] = defaultdict(set)
    for finding in findings:
        affected[finding["kind"]].add(finding["url"])
    issues = [
        {
            "kind": kind,
            "label": KIND_LABELS[kind],
            "severity": SEVERITY[kind],
            "count": count,
            "pagesAffected": len(affected[kind]),
            "shareOfPages": round(len(affected[kind]) / max(1, len(pages)), 3),
            "examples": sorted(affected[kind])[:5],
        }
        for kind, count in by_kind.items()
        if count
    ]
    issues.sort(
        key=lambda issue: (
            -SEVERITY_WEIGHT[issue["severity"]] * issue["pagesAffected"],
            issue["kind"],
        )
    )
    result["issues"] = issues
    sections: dict[str, dict[str, int]] = defaultdict(lambda: {"pages": 0, "findings": 0})
    for page in pages:
        sections[section_of(page["url"], crawl["baseUrl"])]["pages"] += 1
    for finding in findings:
        sections[section_of(finding["url"], crawl["baseUrl"])]["findings"] += 1
    result["sections"] = dict(sorted(sections.items()))
    return result


def scale_progress(report: ProgressCallback, start: float, end: float) -> ProgressCallback:
    """Map the 0..1 progress of one step onto ``start..end`` of the whole task."""

    def scaled(update: dict[str, Any]) -> None:
        if "progress" in update:
            update = {**update, "progress": round(start + (end - start) * update["progress"], 3)}
        report(update)

    return scaled


def run_audit(
    payload: Any,
    scope: SiteScope,
    report: ProgressCallback = ignore_progress,
    *,
    smart: bool = False,
) -> dict[str, Any]:
    """Run the site-audit (or smart-audit) task.

    The payload is ``{"baseUrl"?, "maxPages"?, "minWords"?}``.
    """
    task_id = "smart-audit" if smart else "site-audit"
    options = read_payload(payload, task_id)
    start_url = scope.resolve_base_url(options)
    max_pages = read_int(
        options, "maxPages", default=DEFAULT_MAX_PAGES, low=1, high=MAX_PAGES_LIMIT
    )
    min_words = read_int(options, "minWords", default=DEFAULT_MIN_WORDS, low=0, high=100_000)
    crawl = crawl_site(
        start_url, scope, max_pages=max_pages, report=scale_progress(report, 0.0, 0.85)
    )
    report({"stage": "auditing", "progress": 0.9, "pagesCrawled": crawl["pagesCrawled"]})
    result = audit_crawl(crawl, min_words=min_words, smart=smart)
    report({"stage": "done", "progress": 1.0, "pagesCrawled": crawl["pagesCrawled"]})
    return result
