"""The site-crawl task: follow links through a site and record every page."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import requests

from .parsing import normalize_url, parse_page
from .scope import ProgressCallback, SiteScope, ignore_progress, read_int, read_payload

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAGES = 500
MAX_PAGES_LIMIT = 2000

#: Length of the text excerpt kept for each page, in characters.
EXCERPT_LENGTH = 600

#: Largest page body read, in bytes; the rest of a larger page is ignored.
MAX_PAGE_BYTES = 2 * 1024 * 1024

#: (connect, read) timeouts for each request, in seconds.
TIMEOUTS = (2.0, 10.0)

#: How often progress is reported, in pages.
PROGRESS_EVERY = 10


def fetch_page(session: requests.Session, url: str) -> tuple[int, str | None, str]:
    """Fetch ``url`` without following redirects.

    Return the status, the ``Location`` header of a redirect (or ``None``)
    and the body as text (empty for anything but a 200 HTML response).
    """
    with session.get(url, timeout=TIMEOUTS, allow_redirects=False, stream=True) as response:
        location = response.headers.get("Location") if response.is_redirect else None
        content_type = response.headers.get("Content-Type", "")
        if response.status_code != 200 or not content_type.startswith("text/html"):
            return response.status_code, location, ""
        body = response.raw.read(MAX_PAGE_BYTES, decode_content=True)
        return response.status_code, location, body.decode(response.encoding or "utf-8", "replace")


def crawl_site(
    start_url: str,
    scope: SiteScope,
    *,
    max_pages: int = DEFAULT_MAX_PAGES,
    session: requests.Session | None = None,
    report: ProgressCallback = ignore_progress,
) -> dict[str, Any]:
    """Crawl the site breadth first from ``start_url`` and return what it found.

    Only URLs inside ``scope`` are fetched, each at most once, and at most
    ``max_pages`` of them. Links that leave the scope are listed under
    ``externalLinks`` but never fetched. After the pages, every image that a
    page shows and that is inside the scope is checked with a HEAD request.

    :returns: a dict with ``baseUrl``, ``pagesCrawled``, ``maxPages``,
        ``limitReached``, ``statusCounts``, ``pages`` (one record per fetched
        URL: ``url``, ``status``, ``depth``, ``linkedFrom``, ``title``,
        ``description``, ``headings``, ``links``, ``images``, ``wordCount``,
        ``excerpt``, and ``redirectTo`` for redirects), ``images`` (``url``
        and ``status``) and ``externalLinks``.
    :raises OutOfScopeError: if ``start_url`` is outside ``scope``.
    :raises StartPageError: if ``start_url`` itself cannot be read.
    """
    start_url = normalize_url(scope.check_url(start_url, field="baseUrl"))
    owns_session = session is None
    http = session or requests.Session()
    queue: deque[tuple[str, int, str | None]] = deque([(start_url, 0, None)])
    seen = {start_url}
    pages: list[dict[str, Any]] = []
    external: set[str] = set()
    status_counts: dict[str, int] = {}
    progress = 0.0
    report({"stage": "crawling", "progress": 0.0, "pagesCrawled": 0})
    try:
        while queue and len(pages) < max_pages:
            url, depth, referrer = queue.popleft()
            record, found = crawl_one(http, url, depth, referrer)
            if depth == 0 and not 200 <= record["status"] < 400:
                raise StartPageError(
                    f"The start page {url} returned HTTP {record['status']}, so there is"
                    " nothing to crawl. Give a baseUrl of a page that exists."
                )
            pages.append(record)
            status_counts[str(record["status"])] = status_counts.get(str(record["status"]), 0) + 1
            for link in found:
                if not scope.contains(link):
                    external.add(link)
                elif link not in seen:
                    seen.add(link)
                    queue.append((link, depth + 1, url))
            if len(pages) % PROGRESS_EVERY == 0:
                # The queue only contains the links found so far, so the share of
                # the work done is an estimate: it never goes backwards.
                share = len(pages) / min(max_pages, len(pages) + len(queue))
                progress = max(progress, round(0.9 * share, 3))
                report({"stage": "crawling", "progress": progress, "pagesCrawled": len(pages)})

        report({"stage": "checking images", "progress": 0.9, "pagesCrawled": len(pages)})
        images = check_images(http, pages, scope)
    finally:
        if owns_session:
            http.close()

    report({"stage": "done", "progress": 1.0, "pagesCrawled": len(pages)})
    return {
        "baseUrl": start_url,
        "pagesCrawled": len(pages),
        "maxPages": max_pages,
        "limitReached": bool(queue),
        "statusCounts": status_counts,
        "pages": pages,
        "images": images,
        "externalLinks": sorted(external),
    }


class StartPageError(ValueError):
    """The page a crawl starts from is missing or cannot be fetched."""


def crawl_one(
    session: requests.Session, url: str, depth: int, referrer: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Fetch and parse one URL; return its record and the URLs it links to."""
    record: dict[str, Any] = {"url": url, "depth": depth, "linkedFrom": referrer}
    try:
        status, location, body = fetch_page(session, url)
    except requests.RequestException as error:
        logger.info("Fetching %s failed: %s", url, type(error).__name__)
        record.update(status=0, error=f"The request failed ({type(error).__name__}).")
        return record, []

    record["status"] = status
    if location is not None:
        target = normalize_url(requests.compat.urljoin(url, location))
        record["redirectTo"] = target
        return record, [target]
    if not body:
        return record, []

    page = parse_page(body, url)
    text = page.text
    record.update(
        title=page.title,
        description=page.description,
        headings=page.headings,
        links=page.links,
        images=page.images,
        wordCount=page.word_count,
        excerpt=text if len(text) <= EXCERPT_LENGTH else text[:EXCERPT_LENGTH].rsplit(" ", 1)[0],
    )
    return record, page.links


def check_images(
    session: requests.Session, pages: list[dict[str, Any]], scope: SiteScope
) -> list[dict[str, Any]]:
    """Send one HEAD request per distinct image inside the scope; return each status."""
    sources = sorted(
        {
            image["src"]
            for page in pages
            for image in page.get("images", [])
            if image["src"] and scope.contains(image["src"])
        }
    )
    results = []
    for src in sources:
        try:
            response = session.head(src, timeout=TIMEOUTS, allow_redirects=False)
            status = response.status_code
        except requests.RequestException as error:
            logger.info("Checking image %s failed: %s", src, type(error).__name__)
            status = 0
        results.append({"url": src, "status": status})
    return results


def run_crawl(payload: Any, scope: SiteScope, report: ProgressCallback) -> dict[str, Any]:
    """Run the site-crawl task on a payload of ``{"baseUrl"?, "maxPages"?}``."""
    options = read_payload(payload, "site-crawl")
    start_url = scope.resolve_base_url(options)
    max_pages = read_int(
        options, "maxPages", default=DEFAULT_MAX_PAGES, low=1, high=MAX_PAGES_LIMIT
    )
    return crawl_site(start_url, scope, max_pages=max_pages, report=report)
