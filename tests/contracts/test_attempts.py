"""Task attempts: written open, closed once; leases renewed and run out; the artifacts
they delivered; the records routing learns from."""

from __future__ import annotations

from uuid import uuid4

from industrial_orchestrator.domain.agents.records import FinishedAttempt
from industrial_orchestrator.domain.tasks.artifacts import Artifact
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome, TaskAttempt
from industrial_orchestrator.domain.tasks.loop_guard import GUARD_ERROR_PREFIX
from industrial_orchestrator.domain.tasks.task import TaskType
from industrial_orchestrator.services.ports import StoredArtifact, UnitOfWorkFactory

from .builders import at, committed, task


def lease(task_id, attempt: int, agent_id, n: int) -> TaskAttempt:  # type: ignore[no-untyped-def]
    return TaskAttempt(task_id, attempt, agent_id, at(n), at(n + 60))


async def test_open_then_closed_once(uow: UnitOfWorkFactory):
    first, second = task(0, None), task(1, None)
    await committed(uow, tasks=(first, second))
    ada, bob = uuid4(), uuid4()
    made = [lease(first.id, 1, ada, 5), lease(second.id, 1, ada, 1), lease(first.id, 2, bob, 9)]
    async with uow() as unit:
        for attempt in made:
            await unit.attempts.add(attempt.evolve(trouble="ignored by an insert"))
        await unit.commit()
    closed = made[0].evolve(
        outcome=AttemptOutcome.COMPLETED,
        finished_at=at(30),
        output={"files": ("a",)},
        execution_time_ms=1200,
        tokens_used=40,
        cost_usd=0.5,
        error="why",
    )
    async with uow() as unit:
        attempts = unit.attempts
        assert await attempts.of_task(first.id) == [made[0], made[2]]
        assert await attempts.open_of_agent(ada) == [made[1], made[0]]
        assert await attempts.set_trouble(first.id, 1, "provider retrying")
        assert not await attempts.set_trouble(first.id, 7, "no such attempt")
        assert await attempts.close(closed)
        assert not await attempts.close(closed.evolve(outcome=AttemptOutcome.FAILED))
        assert not await attempts.set_trouble(first.id, 1, None)  # closed
        assert await attempts.open_of_agent(ada) == [made[1]]
        await unit.commit()
    async with uow.reader() as unit:
        stored = await unit.attempts.get(first.id, 1)
        # Open ones only, by task then attempt, in one read.
        both = await unit.attempts.open_of_tasks([second.id, first.id, uuid4()])
        assert both == sorted([made[1], made[2]], key=lambda a: (a.task_id, a.attempt))
        assert await unit.attempts.open_of_tasks([]) == []
    assert stored == closed.evolve(output={"files": ["a"]}, trouble="provider retrying")


async def test_leases_renewed_and_run_out(uow: UnitOfWorkFactory):
    tasks = [task(n, None) for n in range(3)]
    await committed(uow, tasks=tuple(tasks))
    ada, bob = uuid4(), uuid4()
    made = [lease(tasks[0].id, 1, ada, 0), lease(tasks[1].id, 1, ada, 10)]
    theirs = lease(tasks[2].id, 1, bob, 5)
    async with uow() as unit:
        for attempt in [*made, theirs]:
            await unit.attempts.add(attempt)
        await unit.commit()
    async with uow() as unit:
        attempts = unit.attempts
        assert await attempts.expired(at(60), limit=10) == []
        assert await attempts.expired(at(66), limit=10) == [made[0], theirs]
        assert await attempts.expired(at(100), limit=2) == [made[0], theirs]
        renewed = await attempts.renew(ada, at(500), only=[tasks[1].id, tasks[2].id])
        assert renewed == [made[1].evolve(expires_at=at(500))]
        everything = await attempts.renew(ada, at(400))
        assert everything == [
            made[0].evolve(expires_at=at(400)),
            made[1].evolve(expires_at=at(400)),
        ]
        assert await attempts.renew(uuid4(), at(400)) == []
        assert await attempts.expired(at(399), limit=10) == [theirs]
        await unit.commit()


async def test_artifacts_and_what_they_touched(uow: UnitOfWorkFactory):
    first, second = task(0, None), task(1, None)
    await committed(uow, tasks=(first, second))
    agent_id = uuid4()
    one, two = lease(first.id, 1, agent_id, 0), lease(first.id, 2, agent_id, 1)

    def file(path: str, content: bytes) -> Artifact:
        return Artifact(path, content, "text/plain", "0" * 64, len(content))

    async with uow() as unit:
        for attempt in (one, two):
            await unit.attempts.add(attempt)
        await unit.attempts.add_artifacts(one, [file("b.py", b"b"), file("a.py", b"a")], at(3))
        await unit.attempts.add_artifacts(two, [file("a.py", b"a2")], at(4))
        await unit.attempts.add_artifacts(two, [], at(4))
        await unit.commit()
    async with uow.reader() as unit:
        attempts = unit.attempts
        assert await attempts.delivered(first.id, 1) == [file("a.py", b"a"), file("b.py", b"b")]
        assert await attempts.delivered(second.id, 1) == []
        assert await attempts.artifacts(first.id) == [
            StoredArtifact(1, "a.py", "text/plain", 1, "0" * 64, at(3)),
            StoredArtifact(1, "b.py", "text/plain", 1, "0" * 64, at(3)),
            StoredArtifact(2, "a.py", "text/plain", 2, "0" * 64, at(4)),
        ]
        assert await attempts.touched([first.id, second.id]) == {first.id: {"a.py", "b.py"}}
        assert await attempts.touched([]) == {}


async def test_the_guard_and_the_recent_results(uow: UnitOfWorkFactory):
    code, tests = task(0, None), task(1, None).evolve(task_type=TaskType.TESTING)
    await committed(uow, tasks=(code, tests))
    ada, bob = uuid4(), uuid4()

    def ended(t, attempt, agent_id, outcome, n, error=None):  # type: ignore[no-untyped-def]
        return lease(t.id, attempt, agent_id, n).evolve(
            outcome=outcome, finished_at=at(n + 10), error=error, cost_usd=float(n)
        )

    done, failed, expired = AttemptOutcome.COMPLETED, AttemptOutcome.FAILED, AttemptOutcome.EXPIRED
    made = [
        ended(code, 1, ada, done, 0),
        ended(code, 2, ada, failed, 20, GUARD_ERROR_PREFIX + "looping"),
        ended(code, 3, ada, expired, 40),
        ended(code, 4, bob, AttemptOutcome.RELEASED, 60),
        ended(tests, 1, ada, done, 80),
        ended(tests, 2, bob, failed, 100, "plain failure"),
    ]
    async with uow() as unit:
        for attempt in made:
            await unit.attempts.add(attempt.evolve(outcome=None, finished_at=None))
            assert await unit.attempts.close(attempt)
        await unit.commit()

    def record(agent_id, task_type, ok, n):  # type: ignore[no-untyped-def]
        return FinishedAttempt(agent_id, task_type, ok, 10_000, float(n))

    async with uow.reader() as unit:
        attempts = unit.attempts
        assert await attempts.stopped_by_guard([code.id, tests.id]) == {code.id: {ada}}
        assert await attempts.stopped_by_guard([]) == {}
        recent = await attempts.recent_results(
            agent_ids=None, task_types=None, since=at(0), per_pair=2
        )
        assert sorted(recent, key=lambda r: r.cost_usd) == [
            record(ada, TaskType.CODE_GENERATION, False, 20),
            record(ada, TaskType.CODE_GENERATION, False, 40),
            record(ada, TaskType.TESTING, True, 80),
            record(bob, TaskType.TESTING, False, 100),
        ]
        only_ada = await attempts.recent_results(
            agent_ids=[ada], task_types=[TaskType.CODE_GENERATION], since=at(15), per_pair=5
        )
        assert sorted(r.cost_usd for r in only_ada) == [20.0, 40.0]
        assert (
            await attempts.recent_results(agent_ids=[], task_types=None, since=at(0), per_pair=5)
            == []
        )
        assert (
            await attempts.recent_results(
                agent_ids=None, task_types=None, since=at(500), per_pair=5
            )
            == []
        )


async def test_an_attempt_of_no_task_reads_as_nothing(uow: UnitOfWorkFactory):
    async with uow.reader() as unit:
        assert await unit.attempts.of_task(uuid4()) == []
        assert await unit.attempts.open_of_agent(uuid4()) == []
        assert await unit.attempts.expired(at(0), limit=5) == []


async def test_a_task_is_read_with_its_current_attempt(uow: UnitOfWorkFactory):
    """The attempt the task's own ``attempt`` names (not its latest row, nor an earlier
    one), with the task as ``tasks.get`` reads it, dependencies included."""
    first = task(0, None)
    fresh = task(1, None, depends_on=(first.id,))
    retried = task(2, None).evolve(attempt=2)
    await committed(uow, tasks=(first, fresh, retried))
    ada, bob = uuid4(), uuid4()
    earlier, current = lease(retried.id, 1, ada, 1), lease(retried.id, 2, bob, 5)
    async with uow() as unit:
        for attempt in (earlier, current, lease(retried.id, 3, ada, 9)):
            await unit.attempts.add(attempt)
        assert await unit.attempts.close(
            current.evolve(outcome=AttemptOutcome.FAILED, finished_at=at(7), output={"n": 1})
        )
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.attempts.with_task(uuid4()) == (None, None)
        assert await unit.attempts.with_task(fresh.id) == (await unit.tasks.get(fresh.id), None)
        read, attempt = await unit.attempts.with_task(retried.id)
        assert read == await unit.tasks.get(retried.id)
        assert attempt == await unit.attempts.get(retried.id, 2)
        assert attempt is not None
        assert (attempt.agent_id, attempt.outcome, attempt.output) == (
            bob,
            AttemptOutcome.FAILED,
            {"n": 1},
        )
        fresh_read, _ = await unit.attempts.with_task(fresh.id)
        assert fresh_read is not None
        assert fresh_read.depends_on == (first.id,)
