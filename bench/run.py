"""Run every benchmark, print each figure beside its target, and exit with
status 1 when a target is missed.

    python bench/run.py            # all six
    python bench/run.py decode     # only the ones whose name contains "decode"

Each benchmark is a script in this folder that prints its figure on its last
line as ``<name>: <number> [<number> ...]``. It runs in its own process, so
the memory benchmark measures a fresh interpreter.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
_FIGURE = re.compile(r":((?:\s+-?[0-9]+(?:\.[0-9]+)?)+)\s*$")


@dataclass(frozen=True)
class Benchmark:
    script: str
    description: str
    #: Whether the numbers of the figure meet the target.
    check: Callable[[list[float]], bool]
    target_text: str


BENCHMARKS = (
    Benchmark(
        "bench_cache_hit.py",
        "cache hit vs plain Flask route, 2 MB (time ratio)",
        lambda figure: figure[0] <= 1.3,
        "<= 1.3x",
    ),
    Benchmark(
        "bench_polls.py",
        "200 polls, 1 MB output: SDK runs.retrieve() time / ours",
        lambda figure: figure[0] >= 20.0,
        ">= 20x",
    ),
    Benchmark(
        "bench_stampede.py",
        "32 concurrent requests, cold 5 MB output: retrievals, downloads",
        lambda figure: figure == [1.0, 1.0],
        "1 1",
    ),
    Benchmark(
        "bench_memory.py",
        "8 clients streaming 10 MB, cache off: peak RSS growth (MB)",
        lambda figure: figure[0] < 30.0,
        "< 30 MB",
    ),
    Benchmark(
        "bench_decode.py",
        "superjson decode 5 MB vs json.loads (time ratio)",
        lambda figure: figure[0] <= 2.0,
        "<= 2x",
    ),
    Benchmark(
        "bench_shared_cache.py",
        "4 gunicorn workers, 100 polls x 20 offloaded outputs: downloads with Redis",
        lambda figure: figure == [20.0],
        "20",
    ),
)


def run_benchmark(benchmark: Benchmark) -> list[float] | None:
    """Run one script and return the numbers of its figure, or ``None`` if
    it failed."""
    command = [sys.executable, str(BENCH_DIR / benchmark.script)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)

    sys.stdout.write(completed.stdout)
    if completed.returncode != 0:
        sys.stdout.write(completed.stderr)
        print(f"{benchmark.script} exited with status {completed.returncode}.")
        return None

    lines = completed.stdout.strip().splitlines()
    match = _FIGURE.search(lines[-1]) if lines else None
    if match is None:
        print(f"{benchmark.script} printed no figure on its last line.")
        return None
    return [float(number) for number in match.group(1).split()]


def main(argv: list[str]) -> int:
    selected = [b for b in BENCHMARKS if not argv or any(name in b.script for name in argv)]
    rows = []

    for benchmark in selected:
        print(f"== {benchmark.script}: {benchmark.description}", flush=True)
        started = time.monotonic()
        figure = run_benchmark(benchmark)
        elapsed = time.monotonic() - started
        met = figure is not None and benchmark.check(figure)
        rows.append((benchmark, figure, met))
        print(f"   ({elapsed:.1f} s)\n", flush=True)

    print(f"{'benchmark':<20} {'figure':>10}  {'target':<14} result")
    for benchmark, figure, met in rows:
        shown = "error" if figure is None else " ".join(f"{number:g}" for number in figure)
        name = benchmark.script.removesuffix(".py")
        print(f"{name:<20} {shown:>10}  {benchmark.target_text:<14} {'met' if met else 'MISSED'}")

    return 0 if all(met for _, _, met in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
