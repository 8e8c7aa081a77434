"""Tests of the example app: the sample site, the local tasks and the app.

The tasks read the bundled sample site over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from example_app import LOCAL_SERVICES_KEY, close_local_services, create_app
from example_app.generate_site import SITE_DIR, build_pages, find_differences, render_site
from example_app.local_mode import LocalServices
from example_app.site_server import SampleSiteServer
from example_app.summaries import summarize_output
from example_app.tasks import TASK_IDS, make_local_tasks
from example_app.tasks.audit import BASIC_KINDS, SMART_KINDS, audit_crawl, run_audit
from example_app.tasks.content import (
    analyze_extraction,
    count_syllables,
    keywords,
    readability,
    run_extraction,
)
from example_app.tasks.crawl import StartPageError, crawl_site, run_crawl
from example_app.tasks.parsing import normalize_url, parse_page
from example_app.tasks.scope import OutOfScopeError, SiteScope
from example_app.tasks.strategy import build_strategy, run_strategy
from flask_trigger_outputs.emulator import Emulator, EmulatorServer

OFFLOAD_THRESHOLD = 512 * 1024


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSiteServer]:
    with SampleSiteServer() as server:
        yield server


@pytest.fixture(scope="module")
def scope(site: SampleSiteServer) -> SiteScope:
    return SiteScope(site.url)


@pytest.fixture(scope="module")
def full_crawl(scope: SiteScope) -> dict[str, Any]:
    return crawl_site(scope.base_url, scope)


def planned_pages() -> list[Any]:
    import random

    from example_app.generate_site import SEED

    return build_pages(random.Random(SEED))


# Sample site


def test_generate_site_matches_committed_folder() -> None:
    assert find_differences(SITE_DIR) == []


def test_generate_site_is_deterministic() -> None:
    assert render_site() == render_site()


def test_sample_site_size_is_reasonable() -> None:
    files = [path for path in SITE_DIR.rglob("*") if path.is_file()]
    html_files = [path for path in files if path.suffix == ".html"]
    assert 250 <= len(html_files) <= 500
    assert sum(path.stat().st_size for path in files) < 3 * 1024 * 1024


def test_site_server_binds_loopback(site: SampleSiteServer) -> None:
    assert site.url.startswith("http://127.0.0.1:")
    response = requests.get(site.url + "about.html", timeout=5)
    assert response.status_code == 200
    assert "<h1>About us</h1>" in response.text


# Parsing


def test_parse_page_reads_title_description_and_headings() -> None:
    html = """<html><head><title> A  page </title>
    <meta name="Description" content="About things."></head>
    <body><nav><a href="/x">Nav</a></nav><main><h1>Big &amp; bold</h1>
    <p>One two three.</p><h2>Sub</h2><script>var ignored = 1;</script></main></body></html>"""
    page = parse_page(html, "http://127.0.0.1:9/dir/page.html")
    assert page.title == "A page"
    assert page.description == "About things."
    assert page.headings == [{"level": 1, "text": "Big & bold"}, {"level": 2, "text": "Sub"}]
    assert page.text == "Big & bold One two three. Sub"
    assert page.word_count == 6


def test_parse_page_resolves_links_and_images() -> None:
    html = """<body><a href="../a.html#top">A</a><a href="b/index.html">B</a>
    <a href="mailto:x@example.com">mail</a><img src="i.png" alt="I"><img src="j.png"></body>"""
    page = parse_page(html, "http://127.0.0.1:9/dir/page.html")
    assert page.links == ["http://127.0.0.1:9/a.html", "http://127.0.0.1:9/dir/b/"]
    assert page.images == [
        {"src": "http://127.0.0.1:9/dir/i.png", "alt": "I"},
        {"src": "http://127.0.0.1:9/dir/j.png", "alt": None},
    ]


def test_parse_page_without_title_or_main() -> None:
    page = parse_page("<p>Only   body text</p>", "http://127.0.0.1:9/")
    assert page.title is None
    assert page.description is None
    assert page.text == "Only body text"


def test_normalize_url_drops_fragment_and_index() -> None:
    assert normalize_url("http://127.0.0.1:9/blog/index.html#x") == "http://127.0.0.1:9/blog/"
    assert normalize_url("http://127.0.0.1:9/a.html") == "http://127.0.0.1:9/a.html"


# Scope


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "http://localhost:{port}/",
        "http://127.0.0.1:1/",
        "https://127.0.0.1:{port}/",
        "http://user@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}@example.com/",
        "file:///etc/passwd",
        "",
    ],
)
def test_scope_rejects_urls_outside_site(scope: SiteScope, url: str) -> None:
    port = scope.base_url.rsplit(":", 1)[1].strip("/")
    with pytest.raises(OutOfScopeError):
        scope.check_url(url.format(port=port), field="baseUrl")


def test_scope_message_names_url_and_site(scope: SiteScope) -> None:
    with pytest.raises(OutOfScopeError) as error:
        scope.resolve_base_url({"baseUrl": "https://example.com/"})
    message = str(error.value)
    assert "'https://example.com/'" in message
    assert scope.base_url in message


def test_scope_defaults_to_site(scope: SiteScope) -> None:
    assert scope.resolve_base_url({}) == scope.base_url
    assert scope.resolve_base_url({"baseUrl": ""}) == scope.base_url
    assert scope.resolve_base_url({"baseUrl": scope.base_url + "blog/"}) == scope.base_url + "blog/"


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:80/", "http://localhost:80/", "https://127.0.0.1:80/"]
)
def test_scope_rejects_non_loopback_site(url: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        SiteScope(url)


# Crawl


def test_crawl_records_every_page(full_crawl: dict[str, Any]) -> None:
    html_count = sum(1 for path in SITE_DIR.rglob("*.html"))
    statuses = full_crawl["statusCounts"]
    assert statuses["200"] == html_count
    assert full_crawl["pagesCrawled"] == len(full_crawl["pages"]) == sum(statuses.values())
    assert full_crawl["limitReached"] is False
    urls = [page["url"] for page in full_crawl["pages"]]
    assert len(urls) == len(set(urls))
    assert all(url.startswith(full_crawl["baseUrl"]) for url in urls)


def test_crawl_page_records_have_fields(full_crawl: dict[str, Any]) -> None:
    ok_pages = [page for page in full_crawl["pages"] if page["status"] == 200]
    for page in ok_pages:
        assert set(page) >= {
            "url",
            "status",
            "title",
            "description",
            "headings",
            "links",
            "images",
            "wordCount",
            "excerpt",
        }
        assert len(page["excerpt"]) <= 600
    about = next(page for page in ok_pages if page["url"].endswith("/about.html"))
    assert about["title"] == "About us | Greenfold Gardens"
    assert about["headings"][0] == {"level": 1, "text": "About us"}


def test_crawl_lists_external_links_without_fetching(full_crawl: dict[str, Any]) -> None:
    assert full_crawl["externalLinks"] == [
        "https://example.com/seed-exchange",
        "https://example.org/allotments",
    ]
    assert not any(page["url"].startswith("https://") for page in full_crawl["pages"])


def test_crawl_output_is_over_offload_threshold(full_crawl: dict[str, Any]) -> None:
    assert len(json.dumps(full_crawl).encode()) > OFFLOAD_THRESHOLD


def test_crawl_checks_images(full_crawl: dict[str, Any]) -> None:
    broken = sorted(
        image["url"].rsplit("/", 1)[1] for image in full_crawl["images"] if image["status"] == 404
    )
    planned = {
        src.rsplit("/", 1)[1]
        for page in planned_pages()
        for src, _alt in page.images
        if src.endswith(".jpg")
    }
    assert broken == sorted(planned)


def test_crawl_stops_at_max_pages(scope: SiteScope) -> None:
    updates: list[dict[str, Any]] = []
    result = crawl_site(scope.base_url, scope, max_pages=25, report=updates.append)
    assert result["pagesCrawled"] == 25
    assert result["limitReached"] is True
    progress = [update["progress"] for update in updates]
    assert progress == sorted(progress)
    assert updates[-1] == {"stage": "done", "progress": 1.0, "pagesCrawled": 25}


def test_crawl_reports_progress(scope: SiteScope) -> None:
    updates: list[dict[str, Any]] = []
    run_crawl({"maxPages": 60}, scope, updates.append)
    stages = [update["stage"] for update in updates]
    assert stages[0] == "crawling"
    assert "checking images" in stages
    assert any(update.get("pagesCrawled") == 30 for update in updates)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"baseUrl": "https://example.com/"}, "outside the sample site"),
        ({"maxPages": 0}, "maxPages must be an integer from 1 to 2000"),
        ({"maxPages": "ten"}, "maxPages must be an integer"),
        ([1, 2], "expects a JSON object"),
    ],
)
def test_run_crawl_rejects_bad_payload(scope: SiteScope, payload: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_crawl(payload, scope, lambda update: None)


def test_crawl_missing_start_page(scope: SiteScope) -> None:
    start = scope.base_url + "no-such-page.html"

    with pytest.raises(StartPageError) as error:
        crawl_site(start, scope)

    assert str(error.value) == (
        f"The start page {start} returned HTTP 404, so there is nothing to crawl."
        " Give a baseUrl of a page that exists."
    )


# Audits


def test_audit_finds_planted_defects(full_crawl: dict[str, Any]) -> None:
    pages = planned_pages()
    audit = audit_crawl(full_crawl)
    by_kind = audit["findingsByKind"]

    assert list(by_kind) == list(BASIC_KINDS)
    assert by_kind["missing_title"] == sum(1 for page in pages if page.title is None)
    assert by_kind["missing_description"] == sum(1 for page in pages if page.description is None)
    titles = [page.title for page in pages if page.title]
    assert by_kind["duplicate_title"] == sum(1 for title in titles if titles.count(title) > 1)
    assert by_kind["missing_alt"] == sum(
        1 for page in pages for _src, alt in page.images if alt is None
    )
    assert by_kind["broken_image"] == sum(
        1 for page in pages for src, _alt in page.images if src.endswith(".jpg")
    )
    existing = {page.path for page in pages} | {"/sitemap.html"}
    assert by_kind["broken_link"] == sum(
        1
        for page in pages
        for path, _label in page.links
        if path.startswith("/") and path not in existing
    )
    assert audit["findingCount"] == sum(by_kind.values()) == len(audit["findings"])
    assert 0 <= audit["score"] < 100


def test_audit_flags_thin_pages(full_crawl: dict[str, Any]) -> None:
    audit = audit_crawl(full_crawl)
    thin = {finding["url"] for finding in audit["findings"] if finding["kind"] == "thin_page"}
    assert full_crawl["baseUrl"] + "contact.html" in thin
    for finding in audit["findings"]:
        if finding["kind"] == "thin_page":
            assert finding["wordCount"] < 100
    assert audit_crawl(full_crawl, min_words=0)["findingsByKind"]["thin_page"] == 0


def test_audit_broken_link_names_target(full_crawl: dict[str, Any]) -> None:
    audit = audit_crawl(full_crawl)
    broken = [finding for finding in audit["findings"] if finding["kind"] == "broken_link"]
    assert broken
    for finding in broken:
        assert finding["target"] in finding["detail"]
        assert "404" in finding["detail"]


def test_smart_audit_adds_severity_and_issues(full_crawl: dict[str, Any]) -> None:
    audit = audit_crawl(full_crawl, smart=True)
    assert list(audit["findingsByKind"]) == list(BASIC_KINDS + SMART_KINDS)
    assert all(finding["severity"] in {"high", "medium", "low"} for finding in audit["findings"])
    assert audit["findingsByKind"]["missing_h1"] == sum(
        1 for page in planned_pages() if page.heading_level != 1
    )
    assert audit["findingsByKind"]["multiple_h1"] == 1
    assert sum(audit["severityCounts"].values()) == audit["findingCount"]
    weights = {"high": 3, "medium": 2, "low": 1}
    ranks = [weights[issue["severity"]] * issue["pagesAffected"] for issue in audit["issues"]]
    assert ranks == sorted(ranks, reverse=True)
    assert sum(section["pages"] for section in audit["sections"].values()) == audit["pagesAudited"]


def test_run_audit_reports_stages(scope: SiteScope) -> None:
    updates: list[dict[str, Any]] = []
    audit = run_audit({"maxPages": 40, "minWords": 10}, scope, updates.append, smart=False)
    assert audit["pagesCrawled"] == 40
    assert audit["minWords"] == 10
    assert [update["stage"] for update in updates][-2:] == ["auditing", "done"]
    assert max(update["progress"] for update in updates if update["stage"] == "crawling") <= 0.85


# Content extraction and analysis


def test_extraction_defaults_to_linked_pages(scope: SiteScope) -> None:
    extraction = run_extraction({"limit": 4}, scope)
    urls = [page["url"] for page in extraction["pages"]]
    assert urls[0] == scope.base_url
    assert len(urls) == 4
    assert all(page["status"] == 200 and page["text"] for page in extraction["pages"])
    assert extraction["totalWords"] == sum(page["wordCount"] for page in extraction["pages"])


def test_extraction_keeps_failed_pages(scope: SiteScope) -> None:
    urls = [scope.base_url + "about.html", scope.base_url + "missing.html"]
    extraction = run_extraction({"urls": urls}, scope)
    about, missing = extraction["pages"]
    assert about["title"] == "About us | Greenfold Gardens"
    assert {"level": 2, "text": "Our story"} in about["headings"]
    assert missing == {"url": urls[1], "status": 404, "error": "The page returned 404, not HTML."}


def test_extraction_rejects_outside_urls(scope: SiteScope) -> None:
    with pytest.raises(OutOfScopeError, match=r"urls\[\] 'http://example\.com/'"):
        run_extraction({"urls": ["http://example.com/"]}, scope)


@pytest.mark.parametrize(
    ("word", "syllables"),
    [("the", 1), ("garden", 2), ("tomatoes", 3), ("simple", 2), ("make", 1), ("beautiful", 3)],
)
def test_count_syllables(word: str, syllables: int) -> None:
    assert count_syllables(word) == syllables


def test_readability_flesch_values() -> None:
    stats = readability("The cat sat on the mat. The dog ran.")
    # 9 words, 2 sentences, 9 syllables.
    assert stats["words"] == 9
    assert stats["sentences"] == 2
    assert stats["syllables"] == 9
    assert stats["fleschReadingEase"] == round(206.835 - 1.015 * 4.5 - 84.6 * 1.0, 1)
    assert stats["fleschKincaidGrade"] == round(0.39 * 4.5 + 11.8 - 15.59, 1)
    assert stats["readingLevel"] == "very easy"


def test_readability_of_empty_text() -> None:
    assert readability("")["fleschReadingEase"] is None


def test_keywords_skip_stopwords() -> None:
    found = keywords("The compost and the compost heap. Compost heap again and again.", 3)
    assert found[0] == {"keyword": "compost", "count": 3, "density": round(3 / 11, 4)}
    assert {"keyword": "compost heap", "count": 2, "density": round(2 / 11, 4)} in found
    assert all(item["keyword"] not in {"the", "and"} for item in found)


def test_analysis_of_extraction(scope: SiteScope) -> None:
    extraction = run_extraction({"limit": 5}, scope)
    analysis = analyze_extraction(extraction)
    assert analysis["pagesAnalysed"] == 5
    overall = analysis["overall"]["readability"]
    assert overall["words"] == sum(page["readability"]["words"] for page in analysis["pages"])
    assert 0 < overall["fleschReadingEase"] < 100
    assert analysis["overall"]["keywords"]


def test_analysis_rejects_missing_pages() -> None:
    with pytest.raises(ValueError, match="'pages' list"):
        analyze_extraction({"nothing": 1})


# Strategy


def test_strategy_ranks_recommendations(full_crawl: dict[str, Any]) -> None:
    audit = audit_crawl(full_crawl, smart=True)
    strategy = build_strategy(audit)
    recommendations = strategy["recommendations"]
    assert {item["kind"] for item in recommendations} == {
        kind for kind, count in audit["findingsByKind"].items() if count
    }
    scores = [item["priorityScore"] for item in recommendations]
    assert scores == sorted(scores, reverse=True)
    assert [item["priority"] for item in recommendations] == list(
        range(1, len(recommendations) + 1)
    )
    assert all(item["phase"] == "now" for item in recommendations if item["severity"] == "high")
    assert strategy["generatedBy"] == "rules"
    assert strategy["summary"].startswith(f"The site scores {audit['score']} out of 100")


def test_strategy_adds_readability_advice() -> None:
    audit = {"findings": [], "pagesAudited": 3, "score": 100}
    analysis = {"pagesAnalysed": 3, "overall": {"readability": {"fleschReadingEase": 40.0}}}
    strategy = build_strategy(audit, analysis)
    assert [item["kind"] for item in strategy["recommendations"]] == ["readability"]
    assert (
        build_strategy(audit)["summary"] == "No problems found on 3 pages; keep the site as it is."
    )


def test_run_strategy_audits_when_no_audit_given(scope: SiteScope) -> None:
    strategy = run_strategy({"maxPages": 30}, scope)
    assert strategy["pagesAudited"] <= 30
    assert strategy["recommendations"]


def test_strategy_rejects_audit_without_findings() -> None:
    with pytest.raises(ValueError, match="'findings' list"):
        build_strategy({"score": 1})


# Task registry and summaries


class RecordingContext:
    """Collects metadata updates the way the emulator's task context merges them."""

    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}
        self.updates: list[dict[str, Any]] = []

    def update_metadata(self, **values: Any) -> None:
        self.updates.append(values)
        self.metadata.update(values)


def test_local_tasks_cover_task_ids(scope: SiteScope) -> None:
    assert set(make_local_tasks(scope)) == set(TASK_IDS)


def test_local_analysis_accepts_extraction_output(scope: SiteScope) -> None:
    tasks = make_local_tasks(scope)
    context = RecordingContext()
    extraction = tasks["content-extraction"]({"limit": 3}, context)
    assert context.metadata["stage"] == "done"
    analysis = tasks["content-analysis"](extraction, RecordingContext())
    assert analysis["pagesAnalysed"] == 3


def test_local_analysis_loads_extraction_by_run_id(scope: SiteScope) -> None:
    extraction = run_extraction({"limit": 2}, scope)
    loaded: list[str] = []

    def load_output(run_id: str) -> Any:
        loaded.append(run_id)
        return extraction

    tasks = make_local_tasks(scope, load_output=load_output)
    analysis = tasks["content-analysis"]({"extractionRunId": "run_abc"}, RecordingContext())
    assert loaded == ["run_abc"]
    assert analysis["extractionRunId"] == "run_abc"
    with pytest.raises(ValueError, match="needs 'extraction'"):
        make_local_tasks(scope)["content-analysis"]({}, RecordingContext())


def test_summaries_of_each_task(full_crawl: dict[str, Any]) -> None:
    crawl_summary = summarize_output("site-crawl", full_crawl)
    assert (
        crawl_summary["headline"]
        == f"Crawled {full_crawl['pagesCrawled']} pages of {full_crawl['baseUrl']}."
    )
    audit = audit_crawl(full_crawl, smart=True)
    audit_summary = summarize_output("smart-audit", audit)
    assert {row["kind"]: row["count"] for row in audit_summary["findings"]} == audit[
        "findingsByKind"
    ]
    strategy_summary = summarize_output("ai-strategy", build_strategy(audit))
    assert strategy_summary["facts"][0]["label"].startswith("1. ")
    assert summarize_output("site-crawl", "text")["headline"] == "The site-crawl run returned str."


# The app


@pytest.fixture
def local_app() -> Iterator[Flask]:
    app = create_app({"TESTING": True})
    try:
        yield app
    finally:
        close_local_services(app)


def local_emulator(app: Flask) -> Emulator:
    services = app.extensions[LOCAL_SERVICES_KEY]
    assert isinstance(services, LocalServices)
    return services.emulator.emulator


def start_and_wait(app: Flask, route: str, payload: dict[str, Any]) -> str:
    """POST to a route, wait for the run in the emulator, return its id."""
    response = app.test_client().post(route, json=payload)
    assert response.status_code == 202, response.get_json()
    run_id: str = response.get_json()["runId"]
    local_emulator(app).wait_for_run(run_id, timeout=60)
    return run_id


def test_app_logs_local_mode_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="example_app")
    app = create_app({"TESTING": True})
    try:
        lines = [
            record.getMessage() for record in caplog.records if "Local mode" in record.getMessage()
        ]
        services = app.extensions[LOCAL_SERVICES_KEY]
        assert lines == [
            "Local mode: TRIGGER_SECRET_KEY is not set, so the six tasks run in the built-in"
            f" Trigger.dev emulator at {services.emulator.url} and read the sample site at"
            f" {services.site.url}."
        ]
        assert app.config["TRIGGER_API_URL"].startswith("http://127.0.0.1:")
    finally:
        close_local_services(app)
    assert LOCAL_SERVICES_KEY not in app.extensions


def test_app_default_crawl_is_offloaded(local_app: Flask) -> None:
    client = local_app.test_client()
    run_id = start_and_wait(local_app, "/api/crawl", {})

    status = client.get("/api/crawl/status", query_string={"runId": run_id}).get_json()
    assert status["isSuccess"] is True
    assert status["outputOffloaded"] is True
    assert "output" not in status
    assert status["metadata"]["stage"] == "done"
    assert status["metadata"]["progress"] == 1.0

    body = client.get("/api/crawl", query_string={"runId": run_id}).get_json()
    assert body["outputOffloaded"] is True
    assert body["outputSize"] > OFFLOAD_THRESHOLD
    assert body["output"]["pagesCrawled"] == body["metadata"]["pagesCrawled"]
    assert body["output"]["statusCounts"]["200"] == sum(1 for _ in SITE_DIR.rglob("*.html"))


def test_app_site_audit_is_inline(local_app: Flask) -> None:
    run_id = start_and_wait(local_app, "/api/site-audit", {})
    body = local_app.test_client().get("/api/site-audit", query_string={"runId": run_id}).get_json()
    assert body["outputOffloaded"] is False
    assert body["outputSize"] < OFFLOAD_THRESHOLD
    assert set(body["output"]["findingsByKind"]) == set(BASIC_KINDS)
    assert body["output"]["findingsByKind"]["missing_title"] > 0


def test_app_smart_audit_and_strategy(local_app: Flask) -> None:
    client = local_app.test_client()
    audit_id = start_and_wait(local_app, "/api/audit", {"maxPages": 80})
    audit = client.get("/api/audit", query_string={"runId": audit_id}).get_json()
    assert audit["output"]["pagesCrawled"] == 80
    assert audit["output"]["issues"]

    strategy_id = start_and_wait(local_app, "/api/ai-strategy", {"audit": audit["output"]})
    strategy = client.get("/api/ai-strategy", query_string={"runId": strategy_id}).get_json()
    assert strategy["output"]["score"] == audit["output"]["score"]
    assert {item["kind"] for item in strategy["output"]["recommendations"]} == {
        issue["kind"] for issue in audit["output"]["issues"]
    }


def test_app_content_analysis_chain(local_app: Flask) -> None:
    client = local_app.test_client()
    response = client.post("/api/content/analyze", json={"limit": 3})
    assert response.status_code == 202
    extraction_id = response.get_json()["extractionRunId"]
    emulator = local_emulator(local_app)
    emulator.wait_for_run(extraction_id, timeout=60)

    query = {"extractionRunId": extraction_id}
    body = client.get("/api/content/analyze", query_string=query).get_json()
    assert body["stage"] == "analysis"
    query["analysisRunId"] = body["analysisRunId"]
    emulator.wait_for_run(body["analysisRunId"], timeout=60)

    body = client.get("/api/content/analyze", query_string=query).get_json()
    assert body["isSuccess"] is True
    assert body["output"]["pagesAnalysed"] == 3
    assert body["output"]["overall"]["readability"]["fleschReadingEase"] is not None


@pytest.mark.parametrize(
    ("route", "payload", "field"),
    [
        ("/api/crawl", {"baseUrl": "https://example.com/"}, "baseUrl"),
        ("/api/site-audit", {"baseUrl": "http://192.0.2.10/"}, "baseUrl"),
        ("/api/content/analyze", {"urls": ["http://localhost:22/"]}, "urls"),
    ],
)
def test_app_rejects_urls_outside_site(
    local_app: Flask, route: str, payload: dict[str, Any], field: str
) -> None:
    emulator = local_emulator(local_app)
    runs_before = len(emulator.runs.all_runs())

    response = local_app.test_client().post(route, json=payload)

    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert body["field"] == field
    assert "outside the sample site" in body["message"]
    assert len(emulator.runs.all_runs()) == runs_before


@pytest.mark.parametrize(
    ("route", "payload", "field", "message"),
    [
        (
            "/api/crawl",
            {"maxPages": "ten"},
            "maxPages",
            "maxPages must be an integer from 1 to 2000, not 'ten'.",
        ),
        (
            "/api/crawl",
            {"maxPages": -1},
            "maxPages",
            "maxPages must be an integer from 1 to 2000, not -1.",
        ),
        (
            "/api/site-audit",
            {"minWords": 1.5},
            "minWords",
            "minWords must be an integer from 0 to 100000, not 1.5.",
        ),
        (
            "/api/content/analyze",
            {"limit": 0},
            "limit",
            "limit must be an integer from 1 to 50, not 0.",
        ),
    ],
)
def test_app_rejects_out_of_range_options(
    local_app: Flask, route: str, payload: dict[str, Any], field: str, message: str
) -> None:
    emulator = local_emulator(local_app)
    runs_before = len(emulator.runs.all_runs())

    response = local_app.test_client().post(route, json=payload)

    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid_request", "field": field, "message": message}
    assert len(emulator.runs.all_runs()) == runs_before


def test_app_passes_body_on_after_check(local_app: Flask) -> None:
    services = local_app.extensions[LOCAL_SERVICES_KEY]
    run_id = start_and_wait(
        local_app, "/api/crawl", {"baseUrl": services.site.url + "guides/", "maxPages": 5}
    )
    body = local_app.test_client().get("/api/crawl", query_string={"runId": run_id}).get_json()
    assert body["output"]["baseUrl"] == services.site.url + "guides/"
    assert body["output"]["pagesCrawled"] == 5


def test_task_fails_for_outside_url(local_app: Flask) -> None:
    emulator = local_emulator(local_app)
    run_id = emulator.trigger("site-crawl", {"baseUrl": "https://example.com/"})
    emulator.wait_for_run(run_id, timeout=30)

    body = local_app.test_client().get("/api/crawl", query_string={"runId": run_id}).get_json()
    assert body["isFailed"] is True
    assert body["error"]["name"] == "OutOfScopeError"
    assert body["error"]["message"].startswith(
        "baseUrl 'https://example.com/' is outside the sample site."
    )


def test_report_summary_reads_output(local_app: Flask) -> None:
    run_id = start_and_wait(local_app, "/api/site-audit", {"maxPages": 50})
    body = local_app.test_client().get(f"/reports/{run_id}/summary").get_json()
    assert body["runId"] == run_id
    assert body["taskIdentifier"] == "site-audit"
    assert body["summary"]["headline"].startswith("Audited ")
    assert [row["kind"] for row in body["summary"]["findings"]] == list(BASIC_KINDS)


def test_report_output_downloads_json(local_app: Flask) -> None:
    client = local_app.test_client()
    run_id = start_and_wait(local_app, "/api/crawl", {})
    response = client.get(f"/reports/{run_id}/output.json")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="{run_id}.json"'
    route_output = client.get("/api/crawl", query_string={"runId": run_id}).get_json()["output"]
    assert json.loads(response.data) == route_output


def test_report_rejects_other_runs(local_app: Flask) -> None:
    client = local_app.test_client()
    emulator = local_emulator(local_app)
    echo_id = emulator.create_run("echo", output={"secret": 1})
    running_id = emulator.create_run("site-crawl", status="EXECUTING")
    failed_id = emulator.create_run(
        "site-audit",
        status="FAILED",
        error={"name": "Error", "message": "It broke.", "stackTrace": ""},
    )

    response = client.get(f"/reports/{echo_id}/summary")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "run_not_found",
        "message": f"Run {echo_id} was not found.",
    }
    assert client.get("/reports/not-a-run/summary").status_code == 400
    assert client.get(f"/reports/{running_id}/summary").status_code == 409
    failed = client.get(f"/reports/{failed_id}/output.json")
    assert failed.status_code == 409
    assert "It broke." in failed.get_json()["message"]


def test_index_page_lists_six_tasks(local_app: Flask) -> None:
    response = local_app.test_client().get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for route in (
        "/api/crawl",
        "/api/crawl/status",
        "/api/site-audit",
        "/api/audit",
        "/api/ai-strategy",
    ):
        assert f'"{route}"' in page
    assert 'data-start-url="/api/content/analyze"' in page
    for task_id in TASK_IDS:
        assert f"<code>{task_id}</code>" in page
    assert local_app.extensions[LOCAL_SERVICES_KEY].site.url in page
    assert page.count('aria-live="polite"') == 5
    with local_app.test_client().get("/static/app.js") as script:
        assert script.status_code == 200


def test_app_with_secret_key_uses_given_api(
    trigger_emulator: EmulatorServer, site: SampleSiteServer
) -> None:
    trigger_emulator.emulator.register_tasks(make_local_tasks(SiteScope(site.url)))
    app = create_app(
        {
            "TESTING": True,
            "TRIGGER_SECRET_KEY": trigger_emulator.secret_key,
            "TRIGGER_API_URL": trigger_emulator.url,
        }
    )
    assert LOCAL_SERVICES_KEY not in app.extensions
    client = app.test_client()
    assert "Connected to Trigger.dev at " + trigger_emulator.url in client.get("/").get_data(
        as_text=True
    )

    response = client.post("/api/site-audit", json={"maxPages": 20})
    assert response.status_code == 202
    run_id = response.get_json()["runId"]
    trigger_emulator.emulator.wait_for_run(run_id, timeout=60)
    body = client.get("/api/site-audit", query_string={"runId": run_id}).get_json()
    assert body["output"]["pagesCrawled"] == 20
    assert client.get(f"/reports/{run_id}/summary").status_code == 200


def test_main_rejects_bad_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from example_app.__main__ import main

    monkeypatch.setenv("PORT", "http")
    assert main() == 2
    assert "PORT must be a port number from 1 to 65535, not 'http'." in capsys.readouterr().err


def test_main_serves_page_in_local_mode(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIGGER_")}
    env["PORT"] = str(port)
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "example_app"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            page = wait_for_page(f"http://127.0.0.1:{port}/", attempts=100)
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert "Local mode: the tasks run in the built-in emulator" in page
    output = log_path.read_text()
    assert output.count("Local mode: TRIGGER_SECRET_KEY is not set") == 1


def wait_for_page(url: str, *, attempts: int) -> str:
    """GET ``url`` until it returns 200, at most ``attempts`` times 0.1 s apart."""
    for _ in range(attempts):
        try:
            response = requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.1)
            continue
        if response.status_code == 200:
            return response.text
    raise AssertionError(f"{url} did not answer 200 after {attempts} attempts.")
