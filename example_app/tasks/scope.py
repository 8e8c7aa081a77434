"""Keep the local tasks on the sample site.

In local mode the tasks run inside the example app's process, so a task
that fetched any URL a visitor typed would let the page reach any host the
machine can reach. A :class:`SiteScope` confines every URL to one site on
``127.0.0.1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: A callback that receives progress updates for the run metadata, such as
#: ``{"progress": 0.4, "pagesCrawled": 120, "stage": "crawling"}``.
ProgressCallback = Callable[[dict[str, Any]], None]


def ignore_progress(update: dict[str, Any]) -> None:
    """Progress callback for callers that do not report progress."""


class OutOfScopeError(ValueError):
    """A URL given to a local task is outside the site the task may read."""


@dataclass(frozen=True)
class SiteScope:
    """The one site the local tasks may read.

    :param base_url: the site's base URL, such as ``http://127.0.0.1:8123/``.
        Its host must be ``127.0.0.1``.
    """

    base_url: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(
                f"The sample site URL must be http://127.0.0.1:PORT/, not {self.base_url!r}."
            )
        if not parts.path.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")

    def contains(self, url: str) -> bool:
        """Tell whether ``url`` is on the same origin as the site and below its path."""
        base = urlsplit(self.base_url)
        parts = urlsplit(url)
        return (
            parts.scheme == base.scheme
            and parts.hostname == base.hostname
            and parts.port == base.port
            and parts.username is None
            and parts.password is None
            and parts.path.startswith(base.path)
        )

    def check_url(self, url: object, *, field: str) -> str:
        """Return ``url`` if it is a string inside the site.

        :param field: the payload field the URL came from, for the message.
        :raises OutOfScopeError: if it is not a string or is outside the site.
        """
        if not isinstance(url, str) or not url:
            raise OutOfScopeError(f"{field} must be a non-empty URL string, not {url!r}.")
        if not self.contains(url):
            raise OutOfScopeError(
                f"{field} {url!r} is outside the sample site. In local mode the tasks only"
                f" read pages under {self.base_url}; leave {field} out to use the sample site."
            )
        return url

    def resolve_base_url(self, payload: dict[str, Any]) -> str:
        """Return the payload's ``baseUrl``, or the site's base URL when it has none.

        :raises OutOfScopeError: if ``baseUrl`` is outside the site.
        """
        value = payload.get("baseUrl")
        if value is None or value == "":
            return self.base_url
        return self.check_url(value, field="baseUrl")


def read_payload(payload: Any, task_id: str) -> dict[str, Any]:
    """Return the payload as a dict, treating no payload as an empty object.

    :raises ValueError: if the payload is neither an object nor empty.
    """
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ValueError(
            f"The {task_id} task expects a JSON object as payload, not {type(payload).__name__}."
        )
    return payload


def read_int(payload: dict[str, Any], field: str, *, default: int, low: int, high: int) -> int:
    """Return an integer field of the payload, checking its range.

    :raises ValueError: if the value is not an integer from ``low`` to ``high``.
    """
    value = payload.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer from {low} to {high}, not {value!r}.")
    return value
