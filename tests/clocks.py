"""Clocks that tests move by hand, so retries, expiry and time budgets run
without waiting."""

from __future__ import annotations

from typing import Any

from flask_trigger_outputs._retry import RetryPolicy


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeTime:
    """A clock and sleep for retry policies: sleeping advances the clock
    and records the wait instead of waiting.

    :param policy_options: fields of :class:`RetryPolicy` that every
        :meth:`policy` uses unless the call overrides them.
    """

    def __init__(self, **policy_options: Any) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.policy_options = policy_options

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def policy(self, **options: Any) -> RetryPolicy:
        """Build a retry policy on this clock, with the jitter fixed at the
        middle of its range."""
        return RetryPolicy(
            **{**self.policy_options, **options},
            sleep=self.sleep,
            clock=self.monotonic,
            random=lambda: 0.5,
        )
