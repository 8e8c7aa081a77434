"""Drive the example app's page in a real browser.

Playwright for Python starts the system chromium headless; its own browser
download is not used. The app runs in local mode on a free 127.0.0.1 port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from example_app import LOCAL_SERVICES_KEY, close_local_services, create_app
from example_app.generate_site import SITE_DIR

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Maximum wait for one run to finish in the page, in milliseconds.
RUN_TIMEOUT_MS = 60_000


@pytest.fixture
def served_app() -> Iterator[tuple[Flask, str]]:
    app = create_app({"TESTING": True})
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        close_local_services(app)


@pytest.fixture
def browser_page(chromium_executable: str, tmp_path: Path) -> Iterator[playwright_sync.Page]:
    profile = tmp_path / "profile"
    profile.mkdir()
    with playwright_sync.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            timeout=30_000,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(15_000)
            # expect() has its own default of 5 s, short on a loaded machine.
            playwright_sync.expect.set_options(timeout=15_000)
            yield page
        finally:
            context.close()


def test_page_runs_offloaded_crawl_and_audit(
    served_app: tuple[Flask, str], browser_page: playwright_sync.Page, tmp_path: Path
) -> None:
    app, url = served_app
    page = browser_page
    expect = playwright_sync.expect
    page_count = sum(1 for _ in SITE_DIR.rglob("*.html"))

    page.goto(url + "/")
    expect(page.get_by_test_id("mode")).to_contain_text("Local mode")

    crawl = page.locator("#card-crawl")
    crawl.get_by_role("button", name="Start site crawl").click()
    expect(crawl).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(crawl.locator(".output-offloaded")).to_have_text("yes, read from a presigned URL")
    size_text = crawl.locator(".output-size").inner_text()
    assert size_text.endswith(" KiB"), size_text
    assert float(size_text.split()[0]) > 512
    expect(crawl.locator(".headline")).to_contain_text("Crawled ")
    expect(crawl.locator("progress")).to_have_attribute("value", "1")
    expect(crawl.get_by_role("status")).to_contain_text("COMPLETED")

    with page.expect_download(timeout=15_000) as download_info:
        crawl.get_by_role("button", name="Download the full JSON").click()
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    pages_crawled = json.loads(saved.read_text())["pagesCrawled"]
    # Every page returns 200; the rest are the targets of broken links.
    assert pages_crawled > page_count
    expect(crawl.locator("dd.fact").first).to_have_text(str(pages_crawled))

    audit = page.locator("#card-site-audit")
    audit.get_by_role("button", name="Start site audit").click()
    expect(audit).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(audit.locator(".output-offloaded")).to_have_text("no, returned inline")
    rows = audit.locator(".findings tbody tr")
    expect(rows).to_have_count(7)
    expect(audit.locator('tr[data-kind="missing_title"] td').nth(1)).to_have_text("9")
    expect(audit.locator('tr[data-kind="broken_link"] td').nth(1)).not_to_have_text("0")

    page.screenshot(path=str(tmp_path / "example-app.png"), full_page=True)
    assert (tmp_path / "example-app.png").stat().st_size > 0
    assert app.extensions[LOCAL_SERVICES_KEY] is not None


def test_page_shows_rejected_url_with_keyboard(
    served_app: tuple[Flask, str], browser_page: playwright_sync.Page
) -> None:
    _app, url = served_app
    page = browser_page
    expect = playwright_sync.expect

    page.goto(url + "/")
    card = page.locator("#card-audit")
    field = card.get_by_label("Base URL")
    field.focus()
    page.keyboard.type("https://example.com/")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(card.get_by_role("button", name="Start smart audit")).to_be_focused()
    page.keyboard.press("Enter")

    alert = card.get_by_role("alert")
    expect(alert).to_contain_text("baseUrl 'https://example.com/' is outside the sample site.")
    expect(card).to_have_attribute("data-state", "failed")
    expect(card.get_by_role("status")).to_have_text("Failed.")


def test_page_shows_failed_run_error(
    served_app: tuple[Flask, str], browser_page: playwright_sync.Page
) -> None:
    app, url = served_app
    page = browser_page
    expect = playwright_sync.expect

    site_url = app.extensions[LOCAL_SERVICES_KEY].site.url
    page.goto(url + "/")
    card = page.locator("#card-crawl")
    card.get_by_label("Base URL").fill(site_url + "no-such-page.html")
    card.get_by_role("button", name="Start site crawl").click()

    expect(card).to_have_attribute("data-state", "failed", timeout=RUN_TIMEOUT_MS)
    expect(card.get_by_role("alert")).to_contain_text(
        f"The run ended with status FAILED. StartPageError: The start page"
        f" {site_url}no-such-page.html returned HTTP 404, so there is nothing to crawl."
    )


def test_page_runs_content_analysis_chain(
    served_app: tuple[Flask, str], browser_page: playwright_sync.Page
) -> None:
    _app, url = served_app
    page = browser_page
    expect = playwright_sync.expect

    page.goto(url + "/")
    card = page.locator("#card-content")
    card.get_by_role("button", name="Start content analysis").click()

    expect(card).to_have_attribute("data-state", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(card.locator(".headline")).to_contain_text("Analysed 10 pages: Flesch reading ease")
    expect(card.locator(".output-offloaded")).to_have_text("no, returned inline")
    expect(card.locator("dt.fact")).to_contain_text(
        ["Pages analysed", "Words", "Flesch reading ease"]
    )


def test_page_fits_narrow_screen(
    served_app: tuple[Flask, str], browser_page: playwright_sync.Page, tmp_path: Path
) -> None:
    _app, url = served_app
    page = browser_page
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(url + "/")

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    for button in page.get_by_role("button").all():
        if button.is_visible():
            box = button.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= 360
    page.screenshot(path=str(tmp_path / "example-app-narrow.png"), full_page=True)
