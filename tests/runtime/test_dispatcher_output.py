"""What an internal agent produces is untrusted text with no client to refuse: the
dispatcher makes it storable (U+FFFD for a NUL or a lone surrogate) where it enters, for
log lines, hold-ups, result output (keys included) and the error, before the leases."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from industrial_orchestrator.domain.events import LogStream
from industrial_orchestrator.domain.storable_text import find_unstorable
from industrial_orchestrator.executors.base import Job, Outcome

from . import dispatcher_fakes as fakes


class _Leases:
    def __init__(self) -> None:
        self.logs: list[str] = []
        self.troubles: list[str | None] = []
        self.reports: list[Any] = []

    async def log(self, _agent: Any, _task: Any, _stream: LogStream, text: str) -> int:
        self.logs.append(text)
        return 1

    async def trouble(self, _agent: Any, _task: Any, trouble: str | None) -> bool:
        self.troubles.append(trouble)
        return True

    async def report(self, _agent: Any, report: Any) -> None:
        self.reports.append(report)


class _Babbling:
    name = "babbling"
    unavailable_reason = None

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def execute(self, job: Job) -> Outcome:
        self.jobs.append(job)
        await job.emit(LogStream.AGENT, "out\x00put \ud800\n")
        await job.hold_up("stuck\x00 \udfff")
        return Outcome(
            succeeded=False,
            summary="sum\udfffmary",
            error="bad\x00 news",
            output={"files": ["a\udc80.py"], "k\x00": {"deep": "\ud800"}},
        )

    async def close(self) -> None:
        pass


async def test_an_agents_output_is_made_storable_where_it_enters() -> None:
    leases = _Leases()
    executor = _Babbling()
    dispatcher = fakes.dispatcher(leases, executor)
    task = SimpleNamespace(id=uuid4(), session_id=uuid4())
    agent = SimpleNamespace(id=uuid4())
    await dispatcher._perform(executor, agent, fakes.assignment(task, 3))  # type: ignore[arg-type]

    [job] = executor.jobs
    assert (job.goal, job.context, job.max_tokens, job.attempt) == (
        "the goal",
        {"shared": "yes"},
        7,
        3,
    )
    assert leases.logs == ["out\ufffdput \ufffd\n"]
    assert leases.troubles == ["stuck\ufffd \ufffd"]
    [report] = leases.reports
    assert report.attempt == 3
    assert report.error == "bad\ufffd news"
    assert report.output == {
        "files": ["a\ufffd.py"],
        "k\ufffd": {"deep": "\ufffd"},
        "summary": "sum\ufffdmary",
    }
    assert find_unstorable(report.output) is None
