"""The retry policy shared by the API client and the storage downloader.

Every retry in the package goes through :func:`call_with_retry`, the only
place that uses ``backoff``. Its last release (2.2.1) belongs to an archived
project, so replacing it should touch this module only.

``backoff`` counts the attempts and calls the hooks. The waits are computed
and slept here, through the policy's ``sleep`` and clocks, so that tests can
drive them without waiting, and so that a rate-limit reset time can set the
wait. ``backoff`` itself is given a wait of zero and no logger: its default
log handler writes the exception text, which may contain a presigned URL.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one call.

    The wait before attempt ``n + 1`` is drawn uniformly between zero and
    ``min(max_wait, initial_wait * factor ** (n - 1))`` seconds ("full
    jitter"). A call gives up after ``max_tries`` attempts or once
    ``max_time`` seconds have passed since the first attempt started,
    whichever comes first. An attempt already running when the budget runs
    out is not interrupted, so a call can exceed ``max_time`` by as long as
    that attempt takes. A read timeout bounds only the gaps between bytes,
    not a whole body, so an attempt that reads a body must check the budget
    itself, as :class:`~flask_trigger_outputs.packets.PacketDownloader`
    does between chunks.
    """

    #: Maximum number of attempts, the first included.
    max_tries: int = 5
    #: Time budget in seconds for all attempts and waits together.
    max_time: float = 60.0
    #: Upper bound of the first wait, in seconds.
    initial_wait: float = 1.0
    #: Growth of the upper bound from one wait to the next.
    factor: float = 1.6
    #: Cap on the upper bound of any wait, in seconds.
    max_wait: float = 30.0
    #: Function that waits the given number of seconds.
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    #: Monotonic clock in seconds, for the time budget.
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    #: Wall clock in seconds since the Unix epoch, for rate-limit reset times.
    wall_clock: Callable[[], float] = field(default=time.time, compare=False)
    #: Source of uniform random numbers in ``[0, 1)`` for the jitter.
    random: Callable[[], float] = field(default=random.random, compare=False)
    #: Called with no arguments before each retry, for example to count
    #: retries in :class:`~flask_trigger_outputs.cache_stats.CacheStats`.
    on_retry: Callable[[], None] | None = field(default=None, compare=False)

    def backoff_wait(self, attempt: int) -> float:
        """Return the jittered wait after failed attempt number ``attempt``
        (counted from 1)."""
        bound = min(self.max_wait, self.initial_wait * self.factor ** (attempt - 1))
        return self.random() * bound


class TransientError(Exception):
    """Raised by one attempt whose failure another attempt may fix.

    Internal: callers of :func:`call_with_retry` translate it into a public
    error once the retries are exhausted, using the attributes below.

    :param reason: a short description for logs, such as ``"HTTP 503"`` or
        ``"ConnectTimeout"``. Never a URL.
    :param status_code: the HTTP status of the failed response, or ``None``
        for a failure without a response (connection error, timeout, body
        cut short).
    :param retry_at: Unix time in seconds before which the server asked not
        to retry (from a rate-limit reset header), or ``None``.
    :param cause: the exception that caused the failure, if any.
    """

    def __init__(
        self,
        reason: str,
        *,
        status_code: int | None = None,
        retry_at: float | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code
        self.retry_at = retry_at
        self.cause = cause
        #: Attempts made, set when the retries are given up.
        self.attempts = 1
        #: Seconds from the first attempt to giving up.
        self.elapsed = 0.0
        #: Seconds from giving up until ``retry_at``, set when the retries
        #: were given up because ``retry_at`` lies beyond the time budget.
        self.retry_at_beyond_budget: float | None = None


def call_with_retry(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    operation: str,
    run_id: str | None = None,
    task_id: str | None = None,
) -> T:
    """Call ``attempt`` until it returns, retrying on :class:`TransientError`.

    Any other exception propagates at once. Each retry is logged at WARNING
    with ``operation``, the reason, the attempt number and the wait. The
    record also carries ``trigger_run_id`` and ``trigger_task_id`` as extra
    attributes.

    When the server gave a reset time (``retry_at``), the wait lasts until
    that time plus a jitter of up to ``policy.initial_wait`` seconds. A reset
    time after the end of the budget gives up at once, since the attempt
    after the wait would fail too. Every other wait is cut to the time left
    in the budget.

    :param attempt: makes one attempt. It raises :class:`TransientError` for
        a failure worth retrying.
    :param policy: the limits and the clocks to use.
    :param operation: what is being done, for logs, such as
        ``"Retrieving run 'run_abc'"``. Must not contain a URL.
    :param run_id: the run involved, for the log record.
    :param task_id: the task involved, for the log record.
    :raises TransientError: the last failure, with ``attempts`` and
        ``elapsed`` set, once the attempts or the time budget are used up,
        and ``retry_at_beyond_budget`` set when the reset time lies beyond
        the budget.
    """
    start = policy.clock()

    def elapsed() -> float:
        return policy.clock() - start

    def reset_beyond_budget(failure: TransientError) -> float | None:
        """Return the seconds until ``failure.retry_at`` if that is later
        than the end of the budget, else ``None``."""
        if failure.retry_at is None:
            return None
        reset_in = failure.retry_at - policy.wall_clock()
        return reset_in if reset_in > policy.max_time - elapsed() else None

    def give_up(exc: Exception) -> bool:
        if elapsed() >= policy.max_time:
            return True
        return isinstance(exc, TransientError) and reset_beyond_budget(exc) is not None

    def wait_before_retry(details: Any) -> None:
        failure: TransientError = details["exception"]
        tries: int = details["tries"]

        if failure.retry_at is not None:
            wait = max(0.0, failure.retry_at - policy.wall_clock())
            wait += policy.random() * policy.initial_wait
        else:
            wait = policy.backoff_wait(tries)
        wait = max(0.0, min(wait, policy.max_time - elapsed()))

        logger.warning(
            "%s failed (%s) on attempt %d of %d; retrying in %.2f s.",
            operation,
            failure.reason,
            tries,
            policy.max_tries,
            wait,
            extra={"trigger_run_id": run_id, "trigger_task_id": task_id},
        )
        if policy.on_retry is not None:
            policy.on_retry()
        policy.sleep(wait)

    def record_give_up(details: Any) -> None:
        failure: TransientError = details["exception"]
        failure.attempts = details["tries"]
        failure.elapsed = elapsed()
        failure.retry_at_beyond_budget = reset_beyond_budget(failure)

    retrying = backoff.on_exception(
        backoff.constant,
        TransientError,
        interval=0,
        jitter=None,
        max_tries=policy.max_tries,
        giveup=give_up,
        on_backoff=wait_before_retry,
        on_giveup=record_give_up,
        logger=None,
    )
    return retrying(attempt)()
