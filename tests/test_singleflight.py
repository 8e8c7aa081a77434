"""Tests for merging concurrent calls that share a key."""

from __future__ import annotations

import threading

import pytest
from threads import run_threads, wait_until

from flask_trigger_outputs.errors import OutputTooLargeError
from flask_trigger_outputs.singleflight import SingleFlight

WORKERS = 16


def test_single_flight_merges_concurrent_calls() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    calls = 0
    result = object()
    barrier = threading.Barrier(WORKERS)
    outcomes: list[tuple[object, bool]] = []
    lock = threading.Lock()

    def load() -> object:
        nonlocal calls
        calls += 1
        # Hold the call open until every other worker is waiting on it.
        wait_until(lambda: flight.waiters("k") == WORKERS - 1)
        return result

    def work(_: int) -> None:
        barrier.wait()
        outcome = flight.do("k", load)
        with lock:
            outcomes.append(outcome)

    run_threads(WORKERS, work)

    assert calls == 1
    assert len(outcomes) == WORKERS
    assert all(value is result for value, _ in outcomes)
    assert sum(1 for _, shared in outcomes if not shared) == 1
    assert sum(1 for _, shared in outcomes if shared) == WORKERS - 1
    assert flight.in_flight() == 0


def test_single_flight_shares_exception() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    calls = 0
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def load() -> object:
        nonlocal calls
        calls += 1
        wait_until(lambda: flight.waiters("k") == WORKERS - 1)
        raise LookupError("storage failed")

    def work(_: int) -> None:
        barrier.wait()
        try:
            flight.do("k", load)
        except LookupError as error:
            with lock:
                errors.append(error)

    run_threads(WORKERS, work)

    assert calls == 1
    assert len(errors) == WORKERS
    # Each caller gets its own object, so no two threads add frames to
    # one traceback. The waiters' copies name the leader's as the cause.
    assert len({id(error) for error in errors}) == WORKERS
    assert {type(error) for error in errors} == {LookupError}
    assert {str(error) for error in errors} == {"storage failed"}
    [leader_error] = [error for error in errors if error.__cause__ is None]
    for error in errors:
        if error is not leader_error:
            assert error.__cause__ is leader_error


def test_single_flight_copies_error_attributes() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    started = threading.Event()
    errors: list[OutputTooLargeError] = []

    def load() -> object:
        started.set()
        wait_until(lambda: flight.waiters("k") == 1)
        raise OutputTooLargeError("The packet is too large.", limit=10, run_id="run_abc")

    def work(index: int) -> None:
        if index == 1:
            started.wait(10)
        try:
            flight.do("k", load)
        except OutputTooLargeError as error:
            errors.append(error)

    run_threads(2, work)

    assert len(errors) == 2
    [waiter_error] = [error for error in errors if error.__cause__ is not None]
    [leader_error] = [error for error in errors if error is not waiter_error]
    assert waiter_error.__cause__ is leader_error
    assert waiter_error.message == "The packet is too large."
    assert waiter_error.limit == 10
    assert waiter_error.run_id == "run_abc"
    assert waiter_error.code == "output_too_large"


def test_single_flight_calls_again_after_finish() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert flight.do("k", load) == (1, False)
    assert flight.do("k", load) == (2, False)
    assert flight.in_flight() == 0


def test_single_flight_calls_again_after_failure() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    def fail() -> int:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        flight.do("k", fail)

    assert flight.do("k", lambda: 7) == (7, False)


def test_single_flight_keeps_keys_apart() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    started = threading.Event()
    release = threading.Event()
    results: dict[str, tuple[str, bool]] = {}

    def slow() -> str:
        started.set()
        assert release.wait(10)
        return "a"

    thread = threading.Thread(target=lambda: results.update(a=flight.do("a", slow)))
    thread.start()
    assert started.wait(10)

    # A different key does not wait for the running call of "a".
    assert flight.do("b", lambda: "b") == ("b", False)
    assert flight.in_flight() == 1

    release.set()
    thread.join(10)
    assert results["a"] == ("a", False)


def test_single_flight_waiters_of_interrupted_call() -> None:
    flight: SingleFlight[str, object] = SingleFlight()
    waiter_errors: list[BaseException] = []
    waiter_ready = threading.Event()

    def waiter() -> None:
        waiter_ready.set()
        try:
            flight.do("k", lambda: "unused")
        except RuntimeError as error:
            waiter_errors.append(error)

    thread = threading.Thread(target=waiter)

    def interrupted() -> object:
        thread.start()
        wait_until(lambda: flight.waiters("k") == 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        flight.do("k", interrupted)

    thread.join(10)
    assert len(waiter_errors) == 1
    assert "was interrupted" in str(waiter_errors[0])
