"""Read a superjson document: the JSON text, the meta paths of
``meta.values`` and ``meta.referentialEqualities``, and the escaping of
``meta.v``."""

from __future__ import annotations

import json
from typing import Any

from ..errors import PacketDecodeError

DEFAULT_MAX_DEPTH = 512


_PATH_QUOTE_LIMIT = 60


def _fail(reason: str) -> PacketDecodeError:
    return PacketDecodeError(f"Invalid superjson: {reason}")


def _quote_path(path: list[str]) -> str:
    text = ".".join(path)
    if len(text) > _PATH_QUOTE_LIMIT:
        text = text[:_PATH_QUOTE_LIMIT] + "..."
    return repr(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_document(text: str | bytes, max_depth: int) -> tuple[Any, Any, Any, bool]:
    """Parse the JSON text and split it into ``json``, ``meta.values``,
    ``meta.referentialEqualities`` and whether paths use the escaping of
    ``meta.v`` 1 and later."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"the text is not valid UTF-8 (byte {exc.start}).") from None
    if text.startswith("\ufeff"):
        text = text[1:]

    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"the text is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})."
        ) from None
    except ValueError as exc:
        raise _fail(f"the text is not valid JSON ({exc}).") from None
    except RecursionError:
        raise _fail("the JSON is nested too deeply to decode.") from None

    if not isinstance(document, dict) or "json" not in document:
        raise _fail('expected a JSON object with a "json" key.')

    meta = document.get("meta")
    if meta is None:
        return document["json"], None, None, False
    if not isinstance(meta, dict):
        raise _fail('"meta" must be an object.')

    version = meta.get("v")
    escaped = isinstance(version, int) and not isinstance(version, bool) and version >= 1
    return document["json"], meta.get("values"), meta.get("referentialEqualities"), escaped


def _parse_path(text: Any, escaped: bool, max_depth: int) -> list[str]:
    """Split a meta path into keys.

    Without ``meta.v`` (superjson 2.2.1 and older) only ``\\.`` is an escape,
    for a dot inside a key. From ``meta.v`` 1 on, ``\\\\`` is a backslash and
    any other escape is invalid.
    """
    if not isinstance(text, str):
        raise _fail(f"a meta path must be a string, not {type(text).__name__}.")
    if "\\" not in text:
        keys = text.split(".")
    else:
        keys = []
        key: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            following = text[i + 1] if i + 1 < len(text) else ""
            if char == "\\" and following == ".":
                key.append(".")
                i += 2
                continue
            if char == "\\" and escaped:
                if following == "\\":
                    key.append("\\")
                    i += 2
                    continue
                if following != "$":
                    raise _fail(f"the meta path {_quote_path([text])} has an invalid escape.")
            if char == ".":
                keys.append("".join(key))
                key = []
            else:
                key.append(char)
            i += 1
        keys.append("".join(key))
        if escaped:
            keys = [k[1:] if k.startswith("\\$") else k for k in keys]

    if len(keys) > max_depth:
        raise _fail(f"a meta path has more than {max_depth} keys.")
    return keys


def _collect_annotations(values: Any, escaped: bool, max_depth: int) -> list[tuple[list[str], Any]]:
    """Flatten ``meta.values`` into ``(path, type)`` pairs, children before
    their parent, in the order superjson applies them."""
    result: list[tuple[list[str], Any]] = []

    def visit(tree: Any, origin: list[str], depth: int) -> None:
        if depth > max_depth:
            raise _fail(f"the annotations are nested more than {max_depth} levels deep.")
        if isinstance(tree, dict):
            for key, subtree in tree.items():
                visit(subtree, origin + _parse_path(key, escaped, max_depth), depth + 1)
            return
        if not isinstance(tree, list) or not 1 <= len(tree) <= 2:
            raise _fail(
                f"the annotation at {_quote_path(origin)} is not a list of a type and its children."
            )
        if len(tree) == 2 and tree[1] is not None:
            children = tree[1]
            if not isinstance(children, dict):
                raise _fail(
                    f"the children of the annotation at {_quote_path(origin)} must be an object."
                )
            for key, subtree in children.items():
                visit(subtree, origin + _parse_path(key, escaped, max_depth), depth + 1)
        if len(origin) > max_depth:
            raise _fail(f"a meta path has more than {max_depth} keys.")
        result.append((origin, tree[0]))

    if values is not None:
        visit(values, [], 0)
    return result


def _parse_equalities(
    refs: Any, escaped: bool, max_depth: int
) -> tuple[list[list[str]], list[tuple[list[str], list[list[str]]]]]:
    """Split ``meta.referentialEqualities`` into the paths that hold the root
    itself and ``(representative, identical paths)`` pairs."""
    root_paths: list[list[str]] = []
    groups: list[tuple[list[str], list[list[str]]]] = []
    if refs is None:
        return root_paths, groups

    def parse_group(mapping: Any) -> None:
        if not isinstance(mapping, dict):
            raise _fail("referentialEqualities must map a path to a list of paths.")
        for representative, identical in mapping.items():
            if not isinstance(identical, list):
                raise _fail("referentialEqualities must map a path to a list of paths.")
            groups.append(
                (
                    _parse_path(representative, escaped, max_depth),
                    [_parse_path(path, escaped, max_depth) for path in identical],
                )
            )

    if isinstance(refs, list):
        if not 1 <= len(refs) <= 2 or not isinstance(refs[0], list):
            raise _fail(
                "referentialEqualities in list form must be [root paths] "
                "or [root paths, other paths]."
            )
        root_paths = [_parse_path(path, escaped, max_depth) for path in refs[0]]
        if len(refs) == 2 and refs[1] is not None:
            parse_group(refs[1])
    else:
        parse_group(refs)
    return root_paths, groups


def _index(key: str) -> int | None:
    if key.isdigit() and key.isascii():
        return int(key)
    return None
