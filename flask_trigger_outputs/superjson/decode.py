"""Decode superjson: apply the annotations of ``meta.values`` and the
referential equalities to the parsed ``json`` half."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .convert import (
    _SIMPLE_JSON,
    _SIMPLE_TYPED,
    _UNDEFINED,
    _to_json,
    _to_typed,
    _undefined_to_none,
)
from .document import (
    DEFAULT_MAX_DEPTH,
    _collect_annotations,
    _fail,
    _index,
    _load_document,
    _parse_equalities,
)
from .types import JSMap, JSSet

_MISSING: Any = object()


class _Applier:
    """Replace placeholders at annotated paths, and apply referential
    equalities, in place on the parsed ``json`` half."""

    def __init__(self, convert: Callable[[Any, Any, list[str]], Any], typed: bool) -> None:
        self.convert = convert
        self.typed = typed
        # Containers decoded from a Map or a Set, by id, so that a path can
        # step into them by position the way superjson does:
        # id -> (container, ordered keys or members, or None for a JSMap).
        self.collections: dict[int, tuple[Any, list[Any] | None]] = {}
        self.track_collections = False

    def locate(self, root: Any, path: list[str]) -> tuple[Any, Any] | None:
        """Return the container and the slot holding the value at ``path``,
        or None when the path does not exist."""
        container: Any = None
        slot: Any = None
        current = root
        i = 0
        count = len(path)
        collections = self.collections
        while i < count:
            key = path[i]
            if collections and id(current) in collections:
                order = collections[id(current)][1]
                row = _index(key)
                if row is None:
                    return None
                if isinstance(current, set):
                    if order is None or row >= len(order):
                        return None
                    slot = ("set", row)
                else:
                    if i + 1 >= count:
                        return None
                    part = path[i + 1]
                    size = len(current) if order is None else len(order)
                    if part not in ("0", "1") or row >= size:
                        return None
                    slot = ("map", row, part == "0")
                    i += 1
            elif type(current) is list or type(current) is JSSet:
                row = _index(key)
                if row is None or row >= len(current):
                    return None
                slot = row
            elif type(current) is dict:
                if key not in current:
                    return None
                slot = key
            else:
                return None
            container = current
            current = self.read(container, slot)
            i += 1
        return container, slot

    def read(self, container: Any, slot: Any) -> Any:
        if type(slot) is not tuple:
            return container[slot]
        order = self.collections[id(container)][1]
        if slot[0] == "set":
            return order[slot[1]]  # type: ignore[index]
        _, row, is_key = slot
        if order is None:
            return container[row][0 if is_key else 1]
        key = order[row]
        return key if is_key else container[key]

    def write(self, container: Any, slot: Any, value: Any) -> None:
        if type(slot) is not tuple:
            if value is _UNDEFINED:
                if type(container) is dict:
                    del container[slot]
                    return
                value = None
            container[slot] = value
            return

        value = _undefined_to_none(value)
        order = self.collections[id(container)][1]
        if slot[0] == "set":
            old = order[slot[1]]  # type: ignore[index]
            try:
                container.discard(old)
                container.add(value)
            except TypeError:
                raise _fail("a referential equality puts an unhashable value into a Set.") from None
            order[slot[1]] = value  # type: ignore[index]
            return
        _, row, is_key = slot
        if order is None:
            key, item = container[row]
            container[row] = (value, item) if is_key else (key, value)
        elif not is_key:
            container[order[row]] = value
        else:
            items = list(container.items())
            try:
                items[row] = (value, items[row][1])
                rebuilt = dict(items)
            except TypeError:
                raise _fail("a referential equality puts an unhashable key into a Map.") from None
            container.clear()
            container.update(rebuilt)
            order[row] = value

    def remember(self, value: Any) -> None:
        if not self.track_collections:
            return
        if isinstance(value, dict):
            self.collections[id(value)] = (value, list(value))
        elif isinstance(value, JSMap):
            self.collections[id(value)] = (value, None)
        elif isinstance(value, set):
            self.collections[id(value)] = (value, list(value))

    def apply_values(self, root: Any, annotations: list[tuple[list[str], Any]]) -> Any:
        convert = self.convert
        for path, annotation in annotations:
            if not path:
                root = convert(root, annotation, path)
                if self.typed and annotation in ("map", "set"):
                    self.remember(root)
                continue
            location = self.locate(root, path)
            if location is None:
                # superjson 2.2.1 skips paths that do not exist too; it
                # writes such paths for keys that contain a dot.
                continue
            container, slot = location
            converted = convert(self.read(container, slot), annotation, path)
            if self.typed and annotation in ("map", "set"):
                self.remember(converted)
            self.write(container, slot, converted)
        return _undefined_to_none(root)

    def apply_flat(self, root: Any, values: dict[str, Any], escaped: bool, max_depth: int) -> Any:
        """Apply ``meta.values`` in its object form entry by entry.

        Most entries are one type at a path without escapes, as in
        ``{"pages.0.fetchedAt": ["Date"]}``. Such entries take a shortcut
        that skips the general path parser and tree walk.
        """
        simple = _SIMPLE_TYPED if self.typed else _SIMPLE_JSON
        for key, tree in values.items():
            converter = None
            if type(tree) is list and len(tree) == 1 and type(key) is str and "\\" not in key:
                annotation = tree[0]
                if type(annotation) is str:
                    converter = simple.get(annotation)
            if converter is None:
                root = self.apply_values(
                    root, _collect_annotations({key: tree}, escaped, max_depth)
                )
                continue

            keys = key.split(".")
            if len(keys) > max_depth:
                raise _fail(f"a meta path has more than {max_depth} keys.")

            # Find the container and slot of the path through objects and
            # arrays; a path that does not exist is skipped, as in
            # apply_values.
            container = root
            slot: Any = _MISSING
            for step in keys:
                if slot is not _MISSING:
                    container = container[slot]
                kind = type(container)
                if kind is dict:
                    slot = step if step in container else _MISSING
                elif (kind is list or kind is JSSet) and step.isdigit() and step.isascii():
                    slot = int(step)
                    if slot >= len(container):
                        slot = _MISSING
                else:
                    slot = _MISSING
                if slot is _MISSING:
                    break
            if slot is _MISSING:
                continue

            converted = converter(container[slot], keys)
            if converted is _UNDEFINED:
                if type(container) is dict:
                    del container[slot]
                    continue
                converted = None
            elif self.track_collections and annotation in ("map", "set"):
                self.remember(converted)
            container[slot] = converted
        return root

    def apply_equalities(
        self,
        root: Any,
        root_paths: list[list[str]],
        groups: list[tuple[list[str], list[list[str]]]],
    ) -> Any:
        if self.typed:
            for path in root_paths:
                location = self.locate(root, path)
                if location is not None:
                    self.write(*location, root)
        for representative, identical in groups:
            if representative:
                location = self.locate(root, representative)
                if location is None:
                    continue
                shared = self.read(*location)
            else:
                shared = root
            for path in identical:
                if not self.typed and path[: len(representative)] == representative:
                    # A cycle stays null in the JSON form.
                    continue
                target = self.locate(root, path)
                if target is None:
                    continue
                if self.typed:
                    self.write(*target, shared)
                elif self.read(*target) is None:
                    # A copy keeps the JSON form a tree, so that it can be
                    # written as JSON even when the equalities overlap.
                    self.write(*target, copy.deepcopy(shared))
        return root


def parse(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a superjson document to typed Python values.

    Dates become aware datetimes, BigInts ints, Maps dicts (or
    :class:`JSMap`), Sets sets (or :class:`JSSet`), and shared references
    become the same Python object, cycles included. docs/decoding.md has the
    complete table.

    :param text: the document, as text or UTF-8 bytes. A leading byte order
        mark is ignored.
    :param max_depth: the deepest annotation tree and longest meta path
        accepted.
    :raises PacketDecodeError: the text is not JSON, not a superjson
        document, or its meta is malformed or names an unknown type.
    """
    return _decode(text, max_depth, typed=True)


def parse_as_json(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a superjson document to its JSON form, the value Trigger.dev's
    API returns for the same output stored inline.

    Dates are ISO-8601 strings, BigInts decimal strings, Maps lists of
    ``[key, value]`` pairs, Sets lists, ``undefined`` None, NaN and the
    infinities the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``,
    RegExps ``"/source/flags"`` and Errors ``{"name", "message"}``. A shared
    object appears once per reference and a cycle is None. The result
    contains only JSON types.

    :param text: the document, as text or UTF-8 bytes.
    :param max_depth: the deepest annotation tree and longest meta path
        accepted.
    :raises PacketDecodeError: as :func:`parse`.
    """
    return _decode(text, max_depth, typed=False)


def _decode(text: str | bytes, max_depth: int, *, typed: bool) -> Any:
    value, values, refs, escaped = _load_document(text, max_depth)
    try:
        root_paths, groups = _parse_equalities(refs, escaped, max_depth)
        applier = _Applier(_to_typed if typed else _to_json, typed=typed)
        applier.track_collections = typed and bool(root_paths or groups)
        if isinstance(values, dict):
            value = applier.apply_flat(value, values, escaped, max_depth)
        else:
            annotations = _collect_annotations(values, escaped, max_depth)
            value = applier.apply_values(value, annotations)
        if groups or (typed and root_paths):
            value = applier.apply_equalities(value, root_paths, groups)
    except RecursionError:
        # Only reachable when the caller's own stack is already deep.
        raise _fail("the meta is nested too deeply to decode.") from None
    return value
