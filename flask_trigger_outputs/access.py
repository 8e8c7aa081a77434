"""Access checks that keep one user from reading another user's runs.

Two hooks given to :class:`~flask_trigger_outputs.TriggerOutputs` take part:
``run_tags()`` returns the tags of the current request, which are added to
every run it starts and required on every run it reads, and
``authorize(route_name, run)`` has the final word. A run that fails either
check gets the same 404 response as an unknown run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import RunNotFoundError
from .runs import Run

if TYPE_CHECKING:
    from .extension import TriggerOutputs

logger = logging.getLogger(__name__)


def run_not_found(run_id: str) -> RunNotFoundError:
    """Create the one error for a run that is unknown or that the request
    may not read, so the response does not tell the two apart."""
    return RunNotFoundError(f"Run {run_id} was not found.", run_id=run_id)


def request_tags(extension: TriggerOutputs) -> list[str]:
    """Call the ``run_tags`` hook and return its tags without duplicates.

    :raises TypeError: if the hook returns a string or a value that is not
        an iterable of non-empty strings. This is a bug in the app, so the
        route responds 500 and logs it.
    """
    if extension.run_tags is None:
        return []

    tags = extension.run_tags()

    if isinstance(tags, str | bytes):
        raise TypeError(
            "run_tags() must return an iterable of tags, such as ['user:42'], got a string."
        )

    result: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"run_tags() must return non-empty strings, got {type(tag).__name__}.")
        if tag not in result:
            result.append(tag)

    return result


def check_access(
    extension: TriggerOutputs,
    route_name: str,
    run: Run,
    *,
    required_tags: tuple[str, ...] = (),
) -> None:
    """Check that the current request may read ``run``.

    The run must carry every tag of the request and every tag of
    ``required_tags``, and then ``authorize(route_name, run)`` must return
    true. The log line of a rejection names the run and the check, but not
    the tags, which often contain user ids.

    :raises RunNotFoundError: if a check fails.
    """
    expected = [*request_tags(extension), *required_tags]
    missing = [tag for tag in expected if tag not in run.tags]

    if missing:
        logger.info(
            "Run %s lacks %d of the tags the request requires; responding 404.",
            run.id,
            len(missing),
        )
        raise run_not_found(run.id)

    if extension.authorize is not None and not extension.authorize(route_name, run):
        logger.info("authorize() rejected run %s on route %s; responding 404.", run.id, route_name)
        raise run_not_found(run.id)
