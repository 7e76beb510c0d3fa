"""What a benchmark prints: progress on stderr, Rich tables and JSON on stdout.

The tables of every script format milliseconds, percentages and problem counts alike, so
that their figures read the same from one benchmark to the next.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.stats import CpuUse, Timing

progress = Console(stderr=True, highlight=False, soft_wrap=True)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def fmt_timing(timing: Timing) -> str:
    """``p50 / p99 / max`` in milliseconds."""
    return f"{fmt_ms(timing.p50_ms)} / {fmt_ms(timing.p99_ms)} / {fmt_ms(timing.max_ms)}"


def red_if(value: int) -> str:
    """A problem count: red unless 0."""
    return f"[red]{value}[/]" if value else "0"


def cpu_cells(cpu: CpuUse) -> tuple[str, str, str]:
    """Server, load generator and whole machine, as table cells."""
    return fmt_pct(cpu.server), fmt_pct(cpu.loadgen), fmt_pct(cpu.machine)


def add_columns(table: Table, *names: str, left: int = 1) -> None:
    """The first ``left`` columns are labels (left-justified), the others figures."""
    for index, name in enumerate(names):
        table.add_column(name, justify="left" if index < left else "right")


def measure_table(title: str, rows: Iterable[tuple[str, str]], caption: str | None = None) -> Table:
    """A two-column table: what is measured, and its value."""
    table = Table(title=title, caption=caption)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def print_json(report: Any, **extra: Any) -> None:
    """A report (a dataclass, or a dict) on stdout as indented JSON, with ``extra`` keys."""
    data = report if isinstance(report, dict) else dataclasses.asdict(report)
    print(json.dumps(data | extra, indent=2))
