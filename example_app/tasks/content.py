"""The content-extraction and content-analysis tasks.

Extraction fetches a few pages and keeps their text and headings. Analysis
reads an extraction and computes keyword and readability statistics,
including the Flesch reading ease and the Flesch-Kincaid grade level.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

import requests

from .crawl import fetch_page
from .parsing import WORD_PATTERN, normalize_url, parse_page
from .scope import ProgressCallback, SiteScope, ignore_progress, read_int, read_payload

DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 50

#: Reading speed used for the reading time estimate, in words per minute.
WORDS_PER_MINUTE = 200

SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")

STOPWORDS = frozenset(
    """
    a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each even every few for
    from further had has have having he her here hers him his how i if in into is it its itself
    just like more most much my no nor not now of off on once one only or other our ours out over
    own same she should so some such than that the their theirs them then there these they this
    those through to too under until up upon us very was we were what when where which while who
    whom why will with without would you your yours
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def extract_pages(
    urls: list[str],
    scope: SiteScope,
    *,
    session: requests.Session | None = None,
    report: ProgressCallback = ignore_progress,
) -> list[dict[str, Any]]:
    """Fetch each URL and return its title, description, headings and text.

    A page that cannot be fetched as HTML keeps its ``status`` and gets an
    ``error`` instead of text, so one bad URL does not fail the whole run.
    """
    owns_session = session is None
    http = session or requests.Session()
    pages: list[dict[str, Any]] = []
    try:
        for index, url in enumerate(urls):
            scope.check_url(url, field="urls[]")
            report(
                {"stage": "extracting", "progress": round(index / len(urls), 3), "pagesDone": index}
            )
            try:
                status, _location, body = fetch_page(http, url)
            except requests.RequestException as error:
                pages.append(
                    {
                        "url": url,
                        "status": 0,
                        "error": f"The request failed ({type(error).__name__}).",
                    }
                )
                continue
            if not body:
                pages.append(
                    {
                        "url": url,
                        "status": status,
                        "error": f"The page returned {status}, not HTML.",
                    }
                )
                continue
            page = parse_page(body, url)
            pages.append(
                {
                    "url": url,
                    "status": status,
                    "title": page.title,
                    "description": page.description,
                    "headings": page.headings,
                    "text": page.text,
                    "wordCount": page.word_count,
                }
            )
    finally:
        if owns_session:
            http.close()
    report({"stage": "done", "progress": 1.0, "pagesDone": len(urls)})
    return pages


def default_urls(
    base_url: str, scope: SiteScope, limit: int, session: requests.Session
) -> list[str]:
    """Pick the base page and the first pages it links to inside the scope."""
    urls = [normalize_url(base_url)]
    _status, _location, body = fetch_page(session, base_url)
    if body:
        for link in parse_page(body, base_url).links:
            if len(urls) >= limit:
                break
            if scope.contains(link) and link not in urls:
                urls.append(link)
    return urls[:limit]


def run_extraction(
    payload: Any, scope: SiteScope, report: ProgressCallback = ignore_progress
) -> dict[str, Any]:
    """Run the content-extraction task.

    The payload is ``{"urls"?: [...], "baseUrl"?, "limit"?}``. Without
    ``urls`` the task extracts the base page and the pages it links to, up
    to ``limit`` pages.
    """
    options = read_payload(payload, "content-extraction")
    base_url = scope.resolve_base_url(options)
    limit = read_int(options, "limit", default=DEFAULT_PAGE_LIMIT, low=1, high=MAX_PAGE_LIMIT)
    urls = options.get("urls")
    with requests.Session() as session:
        if urls is None:
            urls = default_urls(base_url, scope, limit, session)
        elif not isinstance(urls, list) or not 1 <= len(urls) <= MAX_PAGE_LIMIT:
            raise ValueError(f"urls must be a list of 1 to {MAX_PAGE_LIMIT} URLs, not {urls!r}.")
        urls = [scope.check_url(url, field="urls[]") for url in urls]
        pages = extract_pages(urls, scope, session=session, report=report)
    return {
        "baseUrl": base_url,
        "pageCount": len(pages),
        "totalWords": sum(page.get("wordCount", 0) for page in pages),
        "pages": pages,
    }


def count_syllables(word: str) -> int:
    """Estimate the syllables of an English word from its vowel groups.

    This is the usual heuristic of readability tools: count groups of
    vowels, drop a silent final ``e``, and count at least one. It is exact
    for most common words and off by one for some.
    """
    word = word.lower()
    groups = re.findall(r"[aeiouy]+", word)
    count = len(groups)
    if word.endswith("e") and not word.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(1, count)


def readability(text: str) -> dict[str, Any]:
    """Compute the readability statistics of a text.

    Flesch reading ease is ``206.835 - 1.015 * words/sentences - 84.6 *
    syllables/words``: higher is easier, 60 to 70 is plain English. The
    Flesch-Kincaid grade is ``0.39 * words/sentences + 11.8 *
    syllables/words - 15.59``, a US school grade.
    """
    words = WORD_PATTERN.findall(text)
    sentences = max(1, len(SENTENCE_END.findall(text)))
    if not words:
        return {
            "words": 0,
            "sentences": 0,
            "syllables": 0,
            "averageSentenceLength": 0.0,
            "averageSyllablesPerWord": 0.0,
            "fleschReadingEase": None,
            "fleschKincaidGrade": None,
            "readingLevel": "no text",
        }
    syllables = sum(count_syllables(word) for word in words)
    words_per_sentence = len(words) / sentences
    syllables_per_word = syllables / len(words)
    ease = 206.835 - 1.015 * words_per_sentence - 84.6 * syllables_per_word
    grade = 0.39 * words_per_sentence + 11.8 * syllables_per_word - 15.59
    return {
        "words": len(words),
        "sentences": sentences,
        "syllables": syllables,
        "averageSentenceLength": round(words_per_sentence, 2),
        "averageSyllablesPerWord": round(syllables_per_word, 3),
        "fleschReadingEase": round(ease, 1),
        "fleschKincaidGrade": round(grade, 1),
        "readingLevel": reading_level(ease),
    }


def reading_level(ease: float) -> str:
    """Name the band of a Flesch reading ease score, as in Flesch's table."""
    bands = [
        (90, "very easy"),
        (80, "easy"),
        (70, "fairly easy"),
        (60, "plain English"),
        (50, "fairly difficult"),
        (30, "difficult"),
    ]
    for low, name in bands:
        if ease >= low:
            return name
    return "very difficult"


def keywords(text: str, count: int) -> list[dict[str, Any]]:
    """Return the most frequent words and two-word phrases that are not stopwords."""
    words = [word.lower() for word in WORD_PATTERN.findall(text)]
    content_words = [
        word for word in words if word not in STOPWORDS and len(word) > 2 and not word.isdigit()
    ]
    total = max(1, len(words))
    single = Counter(content_words)
    pairs = Counter(
        f"{first} {second}"
        for first, second in itertools.pairwise(words)
        if first not in STOPWORDS and second not in STOPWORDS and len(first) > 2 and len(second) > 2
    )
    ranked = single.most_common(count) + [
        (phrase, n) for phrase, n in pairs.most_common(count) if n > 1
    ]
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return [
        {"keyword": keyword, "count": n, "density": round(n / total, 4)}
        for keyword, n in ranked[:count]
    ]


def analyze_extraction(extraction: dict[str, Any], *, keyword_count: int = 15) -> dict[str, Any]:
    """Analyse an extraction, as returned by :func:`run_extraction`.

    :returns: per-page statistics (``url``, ``title``, readability, the top
        keywords, heading counts and reading time) and the same statistics
        for all pages together under ``overall``.
    :raises ValueError: if ``extraction`` has no ``pages`` list.
    """
    pages = extraction.get("pages") if isinstance(extraction, dict) else None
    if not isinstance(pages, list):
        raise ValueError("The content-analysis task needs an extraction with a 'pages' list.")
    analysed = []
    texts = []
    for page in pages:
        text = page.get("text") or ""
        if not text:
            analysed.append(
                {"url": page.get("url"), "skipped": page.get("error", "The page has no text.")}
            )
            continue
        texts.append(text)
        stats = readability(text)
        analysed.append(
            {
                "url": page.get("url"),
                "title": page.get("title"),
                "readability": stats,
                "readingTimeMinutes": round(stats["words"] / WORDS_PER_MINUTE, 1),
                "headingCounts": dict(
                    Counter(f"h{heading['level']}" for heading in page.get("headings", []))
                ),
                "keywords": keywords(text, 8),
            }
        )
    combined = " ".join(texts)
    overall = readability(combined)
    return {
        "pageCount": len(pages),
        "pagesAnalysed": len(texts),
        "overall": {
            "readability": overall,
            "readingTimeMinutes": round(overall["words"] / WORDS_PER_MINUTE, 1),
            "keywords": keywords(combined, keyword_count),
        },
        "pages": analysed,
    }
