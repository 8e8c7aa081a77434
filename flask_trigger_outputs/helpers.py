"""Functions that read runs from any view through the current app.

They find the app's :class:`~flask_trigger_outputs.reader.RunReader`
through :func:`~flask_trigger_outputs.extension.get_state`, so they work
inside a request and inside a bare application context (a CLI command, a background job
with ``app.app_context()``), once the extension was initialized on the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import has_app_context

from .extension import get_state

if TYPE_CHECKING:
    from .reader import RunReader, RunResult


def _current_reader() -> RunReader:
    if not has_app_context():
        raise RuntimeError(
            "Reading a Trigger.dev run needs an application context. Call this from a"
            " view, or inside 'with app.app_context():'."
        )

    return get_state().reader


def get_run_output(run_id: str, *, as_json: bool = False) -> Any:
    """Return the output of a run that completed successfully.

    An output Trigger.dev stored in object storage is downloaded and decoded
    to typed Python values (timezone-aware datetimes, ``bytes``, sets, ...).
    An output Trigger.dev returned inline arrives in its JSON form (dates as
    ISO-8601 strings, maps as lists of pairs, sets as lists) and is returned
    as such, because the API does not send the typed packet. Pass
    ``as_json=True`` to get the JSON form in both cases.

    While the run is still queued, executing or waiting, this raises
    :class:`~flask_trigger_outputs.errors.RunNotFinishedError`; it does not
    wait. Use :func:`get_run_result` to poll without exceptions.

    :param run_id: the run, ``run_`` followed by lowercase letters and
        digits.
    :param as_json: return the JSON form.
    :raises InvalidRunIdError: ``run_id`` is not a run id.
    :raises RunNotFinishedError: the run has not finished yet.
    :raises RunFailedError: the run failed, crashed, was canceled, expired
        or timed out; ``error_name`` and ``error_message`` give the reason.
    :raises OutputUnavailableError: the run completed but Trigger.dev sent
        neither the output nor a URL for it.
    :raises TriggerOutputsError: the API call, the download or decoding
        failed.
    :raises RuntimeError: there is no application context, or the extension
        is not initialized on the current app.
    """
    return _current_reader().get_output(run_id, as_json=as_json)


def get_run_payload(run_id: str, *, as_json: bool = False) -> Any:
    """Return the payload a run was triggered with, in any status.

    Inline and offloaded payloads are returned like outputs; see
    :func:`get_run_output`.

    :param run_id: the run.
    :param as_json: return the JSON form.
    :raises InvalidRunIdError: ``run_id`` is not a run id.
    :raises OutputUnavailableError: Trigger.dev sent neither the payload nor
        a URL for it.
    :raises TriggerOutputsError: the API call, the download or decoding
        failed.
    :raises RuntimeError: there is no application context, or the extension
        is not initialized on the current app.
    """
    return _current_reader().get_payload(run_id, as_json=as_json)


def get_run_result(run_id: str, *, as_json: bool = True) -> RunResult:
    """Return a run with its status, metadata, error and, once it completed
    successfully, its output.

    It does not raise for a run that is still running or that failed:
    check ``result.run.is_finished``, ``result.run.is_success`` and
    ``result.run.error``. ``result.has_output`` is true when
    ``result.output`` contains the output.

    :param run_id: the run.
    :param as_json: return the output in its JSON form (the default) rather
        than typed.
    :raises InvalidRunIdError: ``run_id`` is not a run id.
    :raises OutputUnavailableError: the run completed but Trigger.dev sent
        neither the output nor a URL for it.
    :raises TriggerOutputsError: the API call, the download or decoding
        failed.
    :raises RuntimeError: there is no application context, or the extension
        is not initialized on the current app.
    """
    return _current_reader().get_result(run_id, as_json=as_json)
