"""Regenerate the figures of docs/reliability.md from a real run of the fault and attack
suites on this machine (``make reliability-report``).

It runs ``tests/reliability`` and ``tests/security`` (PostgreSQL and Redis must be up, as
for ``make test``), collects every figure line the tests print (``[name] text``), and
rewrites the table between the ``figures`` markers of docs/reliability.md with them, the
date and the machine. A failing test is reported and nothing is written.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
FIGURE = re.compile(r"^\[(?P<name>[^\]]+)\] (?P<text>.+)$")
TEST_ID = re.compile(r"^tests/\S+::\S+?(?:\[(?P<param>[^\]]+)\])?(?:\s|$)")
SUITES = ["tests/reliability", "tests/security"]


def main(argv: list[str] | None = None) -> int:
    # It stops and empties PostgreSQL and Redis on the way (the outage suites): `--help`
    # and any argument it does not take say so and run nothing.
    argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog="The suites stop and empty PostgreSQL and Redis while they run: run it alone.",
    ).parse_args(argv)
    command = [sys.executable, "-m", "pytest", *SUITES, "-v", "-s", "-p", "no:cacheprovider"]
    print("running:", " ".join(command), flush=True)
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "true"}
    )
    figures: list[tuple[str, str]] = []
    param: str | None = None
    for line in run.stdout.splitlines():
        if test := TEST_ID.match(line):
            param = test["param"]  # the backend, for a test run on several
        elif figure := FIGURE.match(line.strip()):
            name = figure["name"]
            if param and param not in name:
                name = f"{name} ({param})"
            figures.append((name, figure["text"]))
    summary = run.stdout.strip().splitlines()[-1].strip("= ") if run.stdout.strip() else "-"
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n")
        print(f"the suites failed ({summary}); docs/reliability.md is left as it was")
        return 1
    rows = [f"| {name} | {text.replace('|', '/')} |" for name, text in figures]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    table = "\n".join(
        [
            START,
            f"Run of {stamp} on {platform.system()} {platform.machine()}, {cores} cores, "
            f"Python {platform.python_version()}: {summary}.",
            "",
            "| suite | figures |",
            "|:--|:--|",
            *rows,
            END,
        ]
    )
    text = DOC.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    DOC.write_text(before + table + after)
    print(f"{len(rows)} figures written to {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
