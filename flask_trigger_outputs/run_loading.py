"""Retrieve a run for a route and check that the current request may read it.

Both :mod:`~flask_trigger_outputs.routes` and
:mod:`~flask_trigger_outputs.content_analysis` load their runs through this
module. It is separate so that content_analysis need not import routes,
which imports content_analysis.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .access import check_access, run_not_found
from .errors import RunNotFoundError
from .runs import Run

if TYPE_CHECKING:
    from .extension import TriggerOutputs, TriggerOutputsState

# Rejected runs are logged on the routes logger, as docs/access-control.md
# states, although this code lives in its own module.
logger = logging.getLogger("flask_trigger_outputs.routes")


def load_checked_run(
    state: TriggerOutputsState,
    extension: TriggerOutputs,
    route_name: str,
    run_id: str,
    task_id: str,
    *,
    required_tags: tuple[str, ...] = (),
    fresh: bool = False,
) -> Run:
    """Retrieve a run's status and check that the request may read it.

    The run must belong to ``task_id``, carry the request's tags and
    ``required_tags``, and pass ``authorize``. Otherwise, and for an unknown
    run, :class:`RunNotFoundError` is raised with the same message, so the
    response does not reveal which check failed.

    :param fresh: retrieve the run from the API even when it is cached, so
        its presigned URLs were signed just now.
    """
    try:
        run = state.reader.refresh_run(run_id) if fresh else state.reader.get_run(run_id)
    except RunNotFoundError:
        raise run_not_found(run_id) from None

    if run.task_identifier != task_id:
        logger.info(
            "Run %s belongs to task %s, not %s; responding 404 as for an unknown run.",
            run_id,
            run.task_identifier,
            task_id,
        )
        raise run_not_found(run_id)

    check_access(extension, route_name, run, required_tags=required_tags)
    return run
