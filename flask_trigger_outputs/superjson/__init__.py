"""Decode and encode superjson, the format Trigger.dev stores most task
outputs and payloads in.

A superjson document is ``{"json": <value>, "meta": {...}}``. The ``json``
half is plain JSON in which every value that JSON cannot carry (a Date, a
BigInt, a Map, ``undefined``, ...) is replaced by a placeholder, and
``meta.values`` maps the path of each placeholder to its type. ``meta.
referentialEqualities`` lists paths that held the same object, and ``meta.v``
(written by superjson 2.2.7 and later) switches on a stricter escaping of
keys in paths.

:func:`parse` returns typed Python values (docs/decoding.md has the table),
:func:`parse_as_json` returns the type-free JSON form that Trigger.dev's own
API returns for an inline output, and :func:`stringify` writes a document
that the official SDK reads back.

Both decoders touch only the annotated paths, so a large document costs
little more than :func:`json.loads`.
"""

from __future__ import annotations

from .decode import parse, parse_as_json
from .document import DEFAULT_MAX_DEPTH
from .encode import MAX_SAFE_INTEGER as MAX_SAFE_INTEGER
from .encode import serialize as serialize
from .encode import stringify
from .types import JSURL, JSError, JSMap, JSRegExp, JSSet

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "JSURL",
    "JSError",
    "JSMap",
    "JSRegExp",
    "JSSet",
    "parse",
    "parse_as_json",
    "stringify",
]
