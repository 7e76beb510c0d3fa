"""The shape every benchmark's ``main`` has: its exit codes, its one error, its signals.

One copy so that every script exits the same way (2: could not run, 1: ran with
failures, 0: clean) and cleans up the same way on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from typing import TypeVar

from harness.report import print_json, progress

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_COULD_NOT_RUN = 2
EXIT_INTERRUPTED = 130

R = TypeVar("R")


class BenchError(Exception):
    """The benchmark could not run (server did not start, database unreachable, ...)."""


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring, with the
    ``--json`` option that ``bench_main`` reads."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", 1)[0] if doc else "")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _as_ctrl_c(_signum: int, _frame: object) -> None:
    signal.raise_signal(signal.SIGINT)


def bench_main(
    run: Callable[[argparse.Namespace], R],
    args: argparse.Namespace,
    print_tables: Callable[[R], None],
    *,
    failures: str,
    cleaned_up: str,
) -> int:
    """Run a benchmark the way every script here does: Ctrl-C and SIGTERM unwind (also
    where a shell ignored SIGINT), so servers are stopped and databases dropped; exit 2
    when it could not run, 1 when it ran with failures, else 0. ``failures`` names the
    report's count of failures, printed under that key with ``--json`` (``args.json``);
    ``cleaned_up`` says what was undone after an interruption."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _as_ctrl_c)
    try:
        report = run(args)
    except BenchError as exc:
        progress.print(f"[bold red]bench failed:[/] {exc}", markup=True)
        return EXIT_COULD_NOT_RUN
    except KeyboardInterrupt:
        progress.print(f"[bold red]interrupted[/]: {cleaned_up}", markup=True)
        return EXIT_INTERRUPTED
    count = int(getattr(report, failures))
    if args.json:
        print_json(report, **{failures: count})
    else:
        print_tables(report)
    return EXIT_FAILURES if count else EXIT_OK
