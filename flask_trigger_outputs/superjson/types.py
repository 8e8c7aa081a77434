"""The JavaScript types that have no natural Python counterpart, as
:func:`~flask_trigger_outputs.superjson.parse` returns them and
:func:`~flask_trigger_outputs.superjson.stringify` writes them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JSRegExp:
    """A JavaScript regular expression, kept as its source and flags because
    JavaScript and Python regular expression syntax differ.

    ``str()`` gives the literal form, ``/source/flags``.
    """

    source: str
    flags: str = ""

    def __str__(self) -> str:
        return f"/{self.source}/{self.flags}"

    def to_pattern(self) -> re.Pattern[str]:
        """Compile the expression with :mod:`re`, mapping the ``i``, ``m``
        and ``s`` flags.

        :raises re.error: the source uses syntax that :mod:`re` does not
            accept, such as ``\\p{L}``.
        """
        flags = 0
        if "i" in self.flags:
            flags |= re.IGNORECASE
        if "m" in self.flags:
            flags |= re.MULTILINE
        if "s" in self.flags:
            flags |= re.DOTALL
        return re.compile(self.source, flags)


@dataclass(frozen=True)
class JSError:
    """A JavaScript ``Error`` as superjson stores it.

    superjson keeps only the name and the message (custom properties and the
    class are lost). superjson 2.2.7 and later also keep ``cause``; it is
    ``None`` when the packet has none.
    """

    name: str = "Error"
    message: str = ""
    cause: Any = None


class JSURL(str):
    """A JavaScript ``URL``: the ``href`` string, typed so that
    :func:`stringify` writes it back as a URL."""

    __slots__ = ()

    @property
    def href(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"JSURL({str.__repr__(self)})"


class JSMap(list[tuple[Any, Any]]):
    """A JavaScript ``Map`` that cannot be a :class:`dict`: a list of
    ``(key, value)`` pairs in insertion order.

    Decoding gives one when a key is unhashable (an object or array key) or
    when two keys would collide in Python (``1`` and ``true``).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"JSMap({list.__repr__(self)})"


class JSSet(list[Any]):
    """A JavaScript ``Set`` that cannot be a :class:`set`: its members in
    insertion order.

    Decoding gives one when a member is unhashable (an object or array) or
    when two members would collide in Python.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"JSSet({list.__repr__(self)})"
