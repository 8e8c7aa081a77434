"""The ``flask trigger-outputs`` commands: read a run's status, output or
payload, and show the configuration in effect.

The commands use the app's own configuration and clients, so they see what
the app's routes see.
"""

from __future__ import annotations

import json
from typing import IO, Any

import click
from flask.cli import AppGroup

from .config import describe_config
from .errors import InvalidRunIdError, TriggerOutputsError
from .extension import get_state
from .runs import validate_run_id
from .serialize import run_to_json

#: The command group, added to ``app.cli`` by ``init_app``. Other modules
#: may add commands to it.
trigger_outputs_cli = AppGroup(
    "trigger-outputs", help="Read Trigger.dev runs with this app's configuration."
)


def _validated_run_id(run_id: str) -> str:
    try:
        return validate_run_id(run_id)
    except InvalidRunIdError as error:
        raise click.BadParameter(error.message, param_hint="RUN_ID") from None


def _print_json(value: Any, file: IO[str] | None = None) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False), file=file)


@trigger_outputs_cli.command("status")
@click.argument("run_id")
def status_command(run_id: str) -> None:
    """Print the status of run RUN_ID as JSON, without its output."""
    run_id = _validated_run_id(run_id)

    try:
        run = get_state().reader.get_run(run_id)
    except TriggerOutputsError as error:
        raise click.ClickException(error.message) from None

    _print_json(run_to_json(run))


@trigger_outputs_cli.command("output")
@click.argument("run_id")
@click.option(
    "--output",
    "-o",
    "output_file",
    type=click.File("w", encoding="utf-8", atomic=True),
    help="Write the JSON to this file instead of standard output.",
)
@click.option("--payload", is_flag=True, help="Read the run's payload instead of its output.")
def output_command(run_id: str, output_file: IO[str] | None, payload: bool) -> None:
    """Print the decoded output of run RUN_ID as JSON.

    The output is downloaded when Trigger.dev offloaded it, and decoded to
    the same JSON form the routes return. The command fails while the run is
    still going and when it did not succeed.
    """
    run_id = _validated_run_id(run_id)
    reader = get_state().reader

    try:
        if payload:
            value = reader.get_payload(run_id, as_json=True)
        else:
            value = reader.get_output(run_id, as_json=True)
    except TriggerOutputsError as error:
        raise click.ClickException(error.message) from None

    _print_json(value, output_file)


@trigger_outputs_cli.command("config")
def config_command() -> None:
    """Print the configuration in effect, with the secret key redacted."""
    for key, value in describe_config(get_state().config):
        click.echo(f"{key} = {value!r}")


@trigger_outputs_cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the counters as one JSON object.")
def stats_command(as_json: bool) -> None:
    """Print the cache and download counters of this app.

    The counters live in the process that serves the app and start at zero
    in every process, so this command shows what it did itself. A server
    reads its own with ``app.extensions["trigger_outputs"].cache.snapshot()``.
    """
    counts = get_state().cache.snapshot()

    if as_json:
        _print_json(counts)
        return

    for name, value in counts.items():
        click.echo(f"{name} = {value}")
