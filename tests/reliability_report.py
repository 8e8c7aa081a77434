"""Write the sections of docs/reliability.md that the reliability tests
measure, and make an app's retries record their waits instead of sleeping.

The page has fixed prose and one generated section per test module, each
between ``<!-- name:start -->`` and ``<!-- name:end -->`` markers. A test
replaces only its own section, so the fault matrix and the load test can run
separately, and a section's text depends only on what the test measured.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flask import Flask

#: The page the reliability tests write.
REPORT_PATH = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"

#: Sections of the page, in order, with the heading each gets.
SECTIONS = {
    "fault-matrix": "Fault matrix",
    "load": "Load",
}

_HEADER = """\
# Reliability

The tables on this page are written by the test suite: `tests/test_fault_matrix.py`
writes the fault matrix and `tests/test_load.py` writes the load figures. Run
`pytest tests/test_fault_matrix.py tests/test_load.py` to measure again; the
tests replace their own section and leave the rest of the page alone.

The other reliability tests check properties and write nothing here:

- `tests/test_fuzz_routes.py` sends generated requests to the six routes, from
  the OpenAPI document with schemathesis and from hypothesis strategies for
  run ids, bodies and query strings. No request gets a 5xx response, and every
  4xx response is a JSON object with `error` and `message`.
- `tests/test_fuzz_superjson.py` feeds malformed superjson to the decoder:
  every failure is a `PacketDecodeError`, never another exception or a
  `RecursionError`.
- `tests/test_secrets.py` runs faults with every logger at DEBUG and checks
  that no log line, error message, CLI output or response contains the secret
  key or a presigned URL's signature, and that storage requests carry no
  credentials or cookies, also after a redirect.
- `tests/test_access.py` checks that on every route a run of another task or
  of another user gets the same 404 response as an unknown run.
"""

_lock = threading.Lock()


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render a Markdown table. ``|`` and line breaks in cells are escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(name) for name in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def write_section(name: str, body: str, path: Path = REPORT_PATH) -> None:
    """Replace the section ``name`` of the report with ``body``.

    The page is created with its fixed header when it does not exist yet,
    and a missing section is added in the order of :data:`SECTIONS`.

    :raises KeyError: if ``name`` is not one of :data:`SECTIONS`.
    """
    heading = SECTIONS[name]
    block = f"<!-- {name}:start -->\n## {heading}\n\n{body.strip()}\n<!-- {name}:end -->"

    with _lock:
        text = path.read_text("utf-8") if path.exists() else _HEADER
        sections = _read_sections(text)
        sections[name] = block
        head = text.split("<!-- ", 1)[0].rstrip() if sections else text.rstrip()
        ordered = [sections[key] for key in SECTIONS if key in sections]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + "\n\n" + "\n\n".join(ordered) + "\n", "utf-8")


def _read_sections(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- ([a-z-]+):start -->.*?<!-- \1:end -->", re.DOTALL)
    return {match.group(1): match.group(0) for match in pattern.finditer(text)}


class WaitRecorder:
    """The retry policies' ``sleep``: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)


def instrument(app: Flask) -> WaitRecorder:
    """Make the retries of ``app`` record their waits instead of sleeping,
    with the jitter fixed at half its range."""
    state = app.extensions["trigger_outputs"]
    recorder = WaitRecorder()

    def patched(policy: Any) -> Any:
        return dataclasses.replace(policy, sleep=recorder, random=lambda: 0.5)

    state.client.retry_policy = patched(state.client.retry_policy)
    state.client.uploader.retry_policy = patched(state.client.uploader.retry_policy)
    state.downloader.retry_policy = patched(state.downloader.retry_policy)
    return recorder
