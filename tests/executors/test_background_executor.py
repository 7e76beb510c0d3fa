"""What an internal agent produces is untrusted text with no client to refuse: the common
executor part makes it storable (U+FFFD for a NUL or a lone surrogate) before it reaches
the leases, for log lines, result output (keys included) and the error."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from industrial_orchestrator.domain.events import LogStream
from industrial_orchestrator.domain.storable_text import find_unstorable
from industrial_orchestrator.executors.base import BackgroundExecutor, LogLine, Outcome


class _Leases:
    def __init__(self) -> None:
        self.logs: list[str] = []
        self.reports: list[Any] = []

    async def log(self, _agent: Any, _task: Any, _stream: LogStream, text: str) -> int:
        self.logs.append(text)
        return 1

    async def report(self, _agent: Any, report: Any) -> None:
        self.reports.append(report)


class _Babbling(BackgroundExecutor):
    name = "babbling"

    async def execute(self, agent: Any, assignment: Any, emit: LogLine) -> Outcome:
        await emit(LogStream.AGENT, "out\x00put \ud800\n")
        return Outcome(
            succeeded=False,
            summary="sum\udfffmary",
            error="bad\x00 news",
            output={"files": ["a\udc80.py"], "k\x00": {"deep": "\ud800"}},
        )


async def test_an_agents_output_is_made_storable_where_it_enters() -> None:
    leases = _Leases()
    executor = _Babbling(leases)  # type: ignore[arg-type]
    task = SimpleNamespace(id=uuid4(), session_id=uuid4())
    assignment = SimpleNamespace(task=task, attempt=SimpleNamespace(attempt=1))
    await executor.start(SimpleNamespace(id=uuid4()), assignment)  # type: ignore[arg-type]
    for _ in range(100):
        if leases.reports:
            break
        await asyncio.sleep(0.01)

    assert leases.logs == ["out\ufffdput \ufffd\n"]
    [report] = leases.reports
    assert report.error == "bad\ufffd news"
    assert report.output == {
        "files": ["a\ufffd.py"],
        "k\ufffd": {"deep": "\ufffd"},
        "summary": "sum\ufffdmary",
    }
    assert find_unstorable(report.output) is None
