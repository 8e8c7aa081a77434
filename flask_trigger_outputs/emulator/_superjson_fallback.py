"""Temporary stand-in for flask_trigger_outputs.superjson (plain JSON only)."""

from __future__ import annotations

import json
from typing import Any


def stringify(value: Any) -> str:
    return json.dumps({"json": value}, separators=(",", ":"))


def parse(text: str | bytes) -> Any:
    return json.loads(text)["json"]


def parse_as_json(text: str | bytes) -> Any:
    return json.loads(text)["json"]
