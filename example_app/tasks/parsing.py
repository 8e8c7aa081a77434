"""Parse HTML pages into the facts that the crawl, audit and extraction use."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin

HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

# Elements whose text is never page content.
SKIPPED_TAGS = {"script", "style", "noscript", "template"}

# Elements after which text continues as a new block, so words do not run together.
BLOCK_TAGS = {"p", "li", "ul", "ol", "div", "section", "article", "br", "tr", "td", "th"} | set(
    HEADING_TAGS
)

WORD_PATTERN = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*")


@dataclass
class ParsedPage:
    """The facts of one HTML page.

    ``links`` and image sources are absolute URLs without fragments, resolved
    against the page URL. ``text`` is the text of ``<main>`` when the page
    has one, otherwise of ``<body>``. So navigation and footers do not count
    towards the word count of a page that marks its main content.
    """

    url: str
    title: str | None = None
    description: str | None = None
    headings: list[dict[str, int | str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    images: list[dict[str, str | None]] = field(default_factory=list)
    text: str = ""

    @property
    def word_count(self) -> int:
        return len(WORD_PATTERN.findall(self.text))


def normalize_url(url: str) -> str:
    """Drop the fragment and a trailing ``index.html``, so one page has one URL."""
    url, _fragment = urldefrag(url)
    if url.endswith("/index.html"):
        url = url[: -len("index.html")]
    return url


class _PageParser(HTMLParser):
    def __init__(self, url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage(url=url)
        self._skip_depth = 0
        self._in_title = False
        self._title_parts: list[str] = []
        self._heading: tuple[int, list[str]] | None = None
        self._main_depth = 0
        self._has_main = False
        self._main_parts: list[str] = []
        self._body_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "meta" and (attributes.get("name") or "").lower() == "description":
            content = (attributes.get("content") or "").strip()
            self.page.description = content or None
        elif tag == "main":
            self._main_depth += 1
            self._has_main = True
        elif tag in HEADING_TAGS:
            self._heading = (HEADING_TAGS[tag], [])
        elif tag == "a" and attributes.get("href"):
            href = attributes["href"] or ""
            if not href.startswith(("mailto:", "tel:", "javascript:")):
                self.page.links.append(normalize_url(urljoin(self.page.url, href)))
        elif tag == "img":
            src = attributes.get("src")
            self.page.images.append(
                {
                    "src": normalize_url(urljoin(self.page.url, src)) if src else None,
                    "alt": attributes.get("alt"),
                }
            )
        if tag in BLOCK_TAGS:
            self._add_text(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS and self._skip_depth:
            self._skip_depth -= 1
        elif tag == "title":
            self._in_title = False
        elif tag == "main" and self._main_depth:
            self._main_depth -= 1
        elif tag in HEADING_TAGS and self._heading is not None:
            level, parts = self._heading
            text = " ".join("".join(parts).split())
            if text:
                self.page.headings.append({"level": level, "text": text})
            self._heading = None
        if tag in BLOCK_TAGS:
            self._add_text(" ")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self._title_parts.append(data)
            return
        if self._heading is not None:
            self._heading[1].append(data)
        self._add_text(data)

    def _add_text(self, data: str) -> None:
        self._body_parts.append(data)
        if self._main_depth:
            self._main_parts.append(data)

    def finish(self) -> ParsedPage:
        self.close()
        title = " ".join("".join(self._title_parts).split())
        self.page.title = title or None
        parts = self._main_parts if self._has_main else self._body_parts
        self.page.text = " ".join("".join(parts).split())
        return self.page


def parse_page(html_text: str, url: str) -> ParsedPage:
    """Parse one HTML document fetched from ``url``."""
    parser = _PageParser(url)
    parser.feed(html_text)
    return parser.finish()
