"""Command line: serve the emulator until interrupted.

python -m flask_trigger_outputs.emulator --port 8787 --secret-key tr_dev_local
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

from .app import DEFAULT_OFFLOAD_THRESHOLD, Emulator
from .server import EmulatorServer


def load_tasks(spec: str, emulator: Emulator) -> None:
    """Register the tasks named by ``spec`` (``module:attribute``) on ``emulator``.

    The attribute is either a ``{task_id: callable}`` mapping or a callable
    that takes the emulator and registers tasks itself.

    :raises ValueError: ``spec`` is not of the form ``module:attribute``, or
        the attribute is neither a mapping nor a callable.
    :raises ImportError: the module cannot be imported.
    :raises AttributeError: the module has no such attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"Invalid --tasks value {spec!r}: expected 'module:attribute'.")

    target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, Mapping):
        emulator.register_tasks(target)
    elif callable(target):
        target(emulator)
    else:
        raise ValueError(
            f"{spec!r} is a {type(target).__name__}; expected a mapping of tasks or a callable."
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flask_trigger_outputs.emulator",
        description="Serve a local emulator of the Trigger.dev API on 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free port)"
    )
    parser.add_argument(
        "--secret-key", required=True, help="API key that clients must send as a Bearer token"
    )
    parser.add_argument(
        "--offload-threshold",
        type=int,
        default=DEFAULT_OFFLOAD_THRESHOLD,
        metavar="BYTES",
        help=(
            "packets of at least this many bytes are offloaded to presigned URLs "
            f"(default: {DEFAULT_OFFLOAD_THRESHOLD})"
        ),
    )
    parser.add_argument(
        "--url-expiry",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="lifetime of presigned URLs in seconds (default: 300)",
    )
    parser.add_argument(
        "--tasks",
        action="append",
        default=[],
        metavar="MODULE:ATTRIBUTE",
        help=(
            "a mapping of task ids to callables, or a callable that registers tasks "
            "(may be repeated)"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emulator = Emulator(
        args.secret_key, offload_threshold=args.offload_threshold, url_expiry=args.url_expiry
    )
    try:
        for spec in args.tasks:
            load_tasks(spec, emulator)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"error: cannot load tasks: {exc}", file=sys.stderr)
        emulator.close()
        return 2

    server = EmulatorServer(emulator, port=args.port)
    try:
        print(server.url, flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
