"""The figures the benchmarks compute: nearest-rank percentiles, latency summaries and the
CPU that a server, this process and the whole machine used over a window.

CPU comes from /proc (Linux); elsewhere the server's and the machine's figures are None
and the tables print ``-``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

ERROR_SAMPLES = 5


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list, in 0.001 ms steps."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


@dataclass(frozen=True)
class Timing:
    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, values_ms: list[float]) -> Timing:
        ordered = sorted(values_ms)
        return cls(
            len(ordered),
            percentile(ordered, 0.50),
            percentile(ordered, 0.99),
            round(ordered[-1], 3) if ordered else None,
        )


class Errors:
    """A count of failures and the first ``ERROR_SAMPLES`` descriptions: enough to tell what
    went wrong without flooding the output when everything does."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []

    def add(self, detail: str) -> None:
        self.count += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(detail)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its live descendants (the processes of
    ``serve --workers N``) from /proc (Linux), or None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # After "pid (comm)": state is fields[0], so utime (14) and stime (15) are 11 and 12.
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_process_cpu_seconds(int(child)) or 0.0 for child in children)


def _machine_busy_seconds() -> float | None:
    """CPU time all cores spent on anything but idle and iowait since boot, or None."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except OSError:
        return None
    ticks = [int(value) for value in first.split()[1:]]
    idle = ticks[3] + ticks[4]
    # guest and guest_nice (9, 10) are already counted in user and nice.
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    server: float | None
    loadgen: float
    machine: float | None

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        return cls(_process_cpu_seconds(server_pid), time.process_time(), _machine_busy_seconds())


@dataclass(frozen=True)
class CpuUse:
    """CPU used during the window, in % of one core (the machine's can reach cores x 100)."""

    server: float | None
    loadgen: float
    machine: float | None

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot, seconds: float) -> CpuUse:
        def percent(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round(100 * (end - start) / seconds, 1)

        return cls(
            percent(before.server, after.server),
            round(100 * (after.loadgen - before.loadgen) / seconds, 1),
            percent(before.machine, after.machine),
        )
