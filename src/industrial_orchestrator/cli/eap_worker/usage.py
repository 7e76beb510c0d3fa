"""The usage a command may report: the tokens and money it spent, written as JSON to the
file named by ``$ORCHESTRATOR_USAGE_FILE``, and sent with the task's result.

The file is the command's word, so it is read with care: never through a link or from a
FIFO, at most ``USAGE_FILE_MAX_BYTES``, field by field. Whatever is wrong with it is a
warning, never a failure of the task.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

USAGE_FILE_NAME = "usage.json"
USAGE_FILE_MAX_BYTES = 64 * 1024
# What the server accepts in a result (TaskResultIn): a larger value would get the whole
# result refused, so it is dropped with a warning instead.
MAX_TOKENS_USED = 1_000_000_000
MAX_COST_USD = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What a command reported it spent, for the result; ``problems`` are what was wrong
    with the report (each a warning, never a failure of the task)."""

    fields: dict[str, int | float]
    problems: tuple[str, ...] = ()


def read_usage(path: Path) -> Usage:
    """The usage a command wrote to ``path`` (its ``ORCHESTRATOR_USAGE_FILE``): a JSON
    object with ``tokens_used`` (an integer >= 0) and/or ``cost_usd`` (a number >= 0);
    other keys are ignored. No file is no usage, and no problem."""
    try:
        # Non-blocking and no symlinks: a FIFO or a link planted there cannot hang the
        # worker or make it read another file.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return Usage({})
    except OSError as exc:
        return Usage({}, (f"cannot read it: {exc.strerror or exc}",))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Usage({}, ("not a regular file",))
        raw = os.read(fd, USAGE_FILE_MAX_BYTES + 1)
    except OSError as exc:
        return Usage({}, (f"cannot read it: {exc.strerror or exc}",))
    finally:
        os.close(fd)
    if len(raw) > USAGE_FILE_MAX_BYTES:
        return Usage({}, (f"larger than {USAGE_FILE_MAX_BYTES} bytes",))
    try:
        report = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return Usage({}, (f"not JSON: {exc}",))
    if not isinstance(report, dict):
        return Usage({}, (f"a JSON {type(report).__name__}, not an object",))
    if "tokens_used" not in report and "cost_usd" not in report:
        return Usage({}, ("holds neither tokens_used nor cost_usd",))
    fields: dict[str, int | float] = {}
    problems: list[str] = []
    if "tokens_used" in report:
        tokens = report["tokens_used"]
        if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0:
            if tokens <= MAX_TOKENS_USED:
                fields["tokens_used"] = tokens
            else:
                problems.append(f"tokens_used {tokens} is over {MAX_TOKENS_USED}")
        else:
            problems.append(f"tokens_used {tokens!r} is not an integer >= 0")
    if "cost_usd" in report:
        cost = report["cost_usd"]
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            if math.isfinite(cost) and cost <= MAX_COST_USD:
                fields["cost_usd"] = float(cost)
            else:
                problems.append(f"cost_usd {cost} is over {MAX_COST_USD:g}")
        else:
            problems.append(f"cost_usd {cost!r} is not a number >= 0")
    return Usage(fields, tuple(problems))
