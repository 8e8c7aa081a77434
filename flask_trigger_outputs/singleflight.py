"""Run one call per key at a time and share its outcome with every caller.

A lock around a cache does not prevent a stampede: when a popular entry is
missing, every request that finds it missing would start its own download.
:class:`SingleFlight` makes the first caller for a key the leader, which runs
the call, and makes every caller that arrives while it runs wait for the
leader's value or exception instead of starting another call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Call(Generic[V]):
    """The state of one call in flight, shared by its leader and waiters."""

    __slots__ = ("done", "error", "value", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight(Generic[K, V]):
    """Deduplicate concurrent calls that share a key.

    Only calls that overlap in time are merged: once the leader's call has
    finished, the next caller for the same key starts a new call. Storing the
    outcome for later callers is the caller's job (see
    :meth:`flask_trigger_outputs.cache.OutputCache.get_or_load`).

    The internal lock is held only to look up and register calls, never
    while a call runs. A waiter blocks for as long as the leader's call
    takes, so the call itself must be bounded (the HTTP clients of this
    package set timeouts and a total retry time).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[K, _Call[V]] = {}

    def do(self, key: K, fn: Callable[[], V]) -> tuple[V, bool]:
        """Call ``fn`` unless a call for ``key`` is already running, in which
        case wait for that call and take its outcome.

        :param key: identifies the work; calls with equal keys are merged.
        :param fn: the call to run when this caller becomes the leader.
        :return: the value and whether it came from another caller's call.
        :raises Exception: whatever ``fn`` raised, in the leader and in every
            waiter. Each waiter raises its own copy, with the same class and
            attributes and the leader's exception as its ``__cause__``, so
            that threads do not add frames to one shared traceback.
        """
        with self._lock:
            call = self._calls.get(key)
            if call is None:
                call = _Call()
                self._calls[key] = call
                leader = True
            else:
                call.waiters += 1
                leader = False

        if not leader:
            call.done.wait()
            if call.error is not None:
                raise _copy_error(call.error) from call.error
            return cast(V, call.value), True

        try:
            value = fn()
        except Exception as error:
            call.error = error
            raise
        except BaseException:
            # KeyboardInterrupt or SystemExit belongs to the leader's thread
            # only, so waiters get an ordinary error instead.
            call.error = RuntimeError(
                f"The shared call for {key!r} was interrupted before it finished. "
                "Retry the request."
            )
            raise
        else:
            call.value = value
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()

        return value, False

    def waiters(self, key: K) -> int:
        """Return how many callers wait for the running call of ``key``
        (0 when none runs)."""
        with self._lock:
            call = self._calls.get(key)
            return 0 if call is None else call.waiters

    def in_flight(self) -> int:
        """Return the number of keys whose call is running now."""
        with self._lock:
            return len(self._calls)


def _copy_error(error: BaseException) -> BaseException:
    """Return a new exception of the same class with the same ``args`` and
    attributes, but no traceback.

    :func:`copy.copy` would call ``__init__`` with ``args`` only, which fails
    for classes with keyword-only parameters, so ``__init__`` is skipped.
    """
    clone = type(error).__new__(type(error), *error.args)
    clone.args = error.args
    if hasattr(error, "__dict__"):
        clone.__dict__.update(error.__dict__)
    return clone
