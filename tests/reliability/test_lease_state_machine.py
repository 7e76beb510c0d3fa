"""A hypothesis state machine drives the real lease services (claim, heartbeat, result,
reaper) on SQLite and on PostgreSQL under a clock it controls, with restarts of the
whole storage stack, and checks them after every step against a pure model of leases.

The model is written from the rules of the External Agent Protocol, not from our code:
- a READY task goes to the agent that asks, oldest first, while the agent is online and
  below its capacity; each lease is a new attempt, numbered from 1;
- a result counts only from the agent holding the task's current attempt, and only
  while that attempt is open (the number is the fencing token): a late, stale or foreign
  result changes nothing and writes no file;
- a heartbeat renews the agent's leases (those it names, when it names some) for the
  lease time, and brings an OFFLINE agent back;
- the reaper ends the leases whose time is up and takes agents silent for more than
  three heartbeat intervals offline, returning their tasks; a restart of the
  orchestrator gives everyone a full lease time and three intervals again;
- a lost or failed attempt sends the task back to READY while attempts are left, and
  counts as a failure of the agent; no task is ever completed twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import hypothesis
import pytest
import sqlalchemy as sa
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from industrial_orchestrator.domain.agents.agent import AgentKind, AgentStatus, NewAgent
from industrial_orchestrator.domain.errors import Conflict
from industrial_orchestrator.domain.tasks.artifacts import ArtifactLimits, new_artifact
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome, LeaseLost
from industrial_orchestrator.domain.tasks.lease_rules import AgentNotAccepting
from industrial_orchestrator.domain.tasks.task import TaskStatus, TaskType
from industrial_orchestrator.services.agents import AgentService
from industrial_orchestrator.services.effects import EffectLedger
from industrial_orchestrator.services.task_leases import LeasePolicy, Report, TaskLeases
from industrial_orchestrator.services.tasks import NewTask, TaskService
from industrial_orchestrator.storage import tables
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory
from industrial_orchestrator.workspaces.files import WorkspaceFiles

from .model_databases import MODEL_SETTINGS, backend_of, connect, empty

pytestmark = pytest.mark.slow

LEASE = 90.0
BEAT = 30.0
SILENCE = BEAT * 3  # three missed heartbeats
MAX_ATTEMPTS = 3
CAPACITY = 2
AGENTS = 3
T0 = datetime(2030, 1, 1, tzinfo=UTC)
ARTIFACT = "result.txt"
RESTART_EVERY = 6

READY, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "READY",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
)
# The task transition table, for the moves an operator makes here.
OPERATOR_MOVES = {
    READY: {CANCELLED},
    RUNNING: {COMPLETED, CANCELLED},
    FAILED: {READY, CANCELLED},
    COMPLETED: set(),
    CANCELLED: set(),
}


@dataclass
class ModelTask:
    created_at: datetime
    status: str = READY
    attempt: int = 0
    holder: int | None = None
    """Index of the agent holding the open attempt."""
    last_holder: int | None = None
    expires_at: datetime | None = None
    outcomes: list[str] = field(default_factory=list)
    """How each closed attempt ended, in order."""
    completed_by: int | None = None
    """The attempt whose result completed the task."""


@dataclass
class ModelAgent:
    seen_at: datetime
    online: bool = True
    successes: int = 0
    failures: int = 0


class Lost(Exception):
    """The model says the attempt is lost."""


class LeaseModel:
    """Leases as the protocol describes them, on the model's own clock."""

    def __init__(self) -> None:
        self.now = T0
        self.started_at = T0
        self.tasks: dict[UUID, ModelTask] = {}
        self.agents = [ModelAgent(T0) for _ in range(AGENTS)]

    def willing(self) -> list[int]:
        """The agents that may ask for work while some is READY."""
        return [n for n in range(AGENTS) if self.claimable(n)]

    def leased(self) -> list[UUID]:
        """The tasks some agent has held."""
        return [tid for tid, task in self.tasks.items() if task.last_holder is not None]

    def held_by(self, agent: int) -> list[UUID]:
        return [tid for tid, task in self.tasks.items() if task.holder == agent]

    def claimable(self, agent: int) -> list[UUID] | None:
        """The tasks the agent may be given (the oldest READY ones), None when it may not
        ask."""
        if not self.agents[agent].online or len(self.held_by(agent)) >= CAPACITY:
            return None
        ready = [(t.created_at, tid) for tid, t in self.tasks.items() if t.status == READY]
        if not ready:
            return []
        oldest = min(created for created, _ in ready)
        return [tid for created, tid in ready if created == oldest]

    def lease(self, agent: int, task_id: UUID) -> None:
        task = self.tasks[task_id]
        task.status, task.attempt, task.holder = RUNNING, task.attempt + 1, agent
        task.last_holder = agent
        task.expires_at = self.now + timedelta(seconds=LEASE)

    def accepts(self, agent: int, task_id: UUID, claimed: int | None) -> bool:
        task = self.tasks[task_id]
        return (
            task.status == RUNNING
            and task.holder == agent
            and (claimed is None or claimed == task.attempt)
        )

    def close(self, task_id: UUID, outcome: str) -> None:
        task = self.tasks[task_id]
        agent = self.agents[task.holder] if task.holder is not None else None
        task.outcomes.append(outcome)
        task.holder, task.expires_at = None, None
        if outcome == "completed":
            task.status, task.completed_by = COMPLETED, task.attempt
            if agent:
                agent.successes += 1
            return
        if agent:
            agent.failures += 1
        task.status = READY if task.attempt < MAX_ATTEMPTS else FAILED

    def operator_moves(self, task_id: UUID, target: str) -> None:
        task = self.tasks[task_id]
        if task.holder is not None:
            task.outcomes.append("released")
            task.holder, task.expires_at = None, None
        task.status = target

    def beat(self, agent: int, only: list[UUID] | None) -> list[UUID]:
        """Renew; returns the tasks named that are not the agent's any more."""
        self.agents[agent].seen_at = self.now
        self.agents[agent].online = True
        for task_id in self.held_by(agent):
            if only is None or task_id in only:
                self.tasks[task_id].expires_at = self.now + timedelta(seconds=LEASE)
        return [t for t in only or () if self.tasks[t].holder != agent]

    def reap(self) -> tuple[int, int]:
        grace_until = self.started_at + timedelta(seconds=LEASE)
        expired = [
            tid
            for tid, task in self.tasks.items()
            if task.holder is not None
            and task.expires_at is not None
            and self.now > max(task.expires_at, grace_until)
        ]
        for task_id in expired:
            self.close(task_id, "expired")
        silent = [
            n
            for n, agent in enumerate(self.agents)
            if agent.online
            and self.now - max(agent.seen_at, self.started_at) > timedelta(seconds=SILENCE)
        ]
        for n in silent:
            self.agents[n].online = False
            for task_id in self.held_by(n):
                self.close(task_id, "expired")
        return len(expired), len(silent)


class Clock:
    def __init__(self, model: LeaseModel) -> None:
        self.model = model

    def __call__(self) -> datetime:
        return self.model.now


class LeaseMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self, url: str, home: Path) -> None:
        super().__init__()
        self.url = url
        self.home = home
        self.loop = asyncio.new_event_loop()
        self.model = LeaseModel()
        self.clock = Clock(self.model)
        self.figures = {"claims": 0, "results": 0, "refused": 0, "reaped": 0, "restarts": 0}
        self.calm = 0
        """Steps since the last restart: restarts are rarer than the rest."""
        self._connect()
        self.run(empty(self.engine))
        self.agent_ids = [
            self.run(
                self.agents.register(
                    NewAgent(
                        f"agent-{n}",
                        "implementer",
                        ["python"],
                        kind=AgentKind.EXTERNAL,
                        max_concurrent_tasks=CAPACITY,
                    )
                )
            ).id
            for n in range(AGENTS)
        ]

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def _connect(self) -> None:
        self.engine = connect(self.url)
        uow = SqlUnitOfWorkFactory(self.engine)
        policy = LeasePolicy(
            lease_seconds=LEASE,
            max_attempts=MAX_ATTEMPTS,
            heartbeat_seconds=BEAT,
            started_at=self.model.started_at,
            artifact_limits=ArtifactLimits(max_bytes=1000, max_count=4),
            artifacts_home=self.home,
        )
        self.agents = AgentService(
            uow, clock=self.clock, lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS
        )
        self.task_service = TaskService(uow, clock=self.clock)
        ledger = EffectLedger(
            uow, clock=self.clock, owner="model", grace_seconds=60, single_process=True
        )
        self.leases = TaskLeases(
            uow, clock=self.clock, policy=policy, writer=WorkspaceFiles(), ledger=ledger
        )

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()

    # -- rules -------------------------------------------------------------------------

    @rule(target=tasks, count=st.integers(1, 3))
    def create(self, count: int) -> MultipleResults[UUID]:
        async def ready() -> UUID:
            task = await self.task_service.create(
                NewTask("work", TaskType.CODE_GENERATION, ["python"], 1.0)
            )
            await self.task_service.move(task.id, TaskStatus.READY)
            return task.id

        made = []
        for _ in range(count):
            # A millisecond apart: "oldest first" is then one task, whatever the ids.
            self.model.now += timedelta(milliseconds=1)
            made.append(self.run(ready()))
            self.model.tasks[made[-1]] = ModelTask(created_at=self.model.now)
        return multiple(*made)

    @rule(agent=st.integers(0, AGENTS - 1))
    def claim(self, agent: int) -> None:
        allowed = self.model.claimable(agent)
        try:
            assignment = self.run(self.leases.claim(self.agent_ids[agent]))
        except AgentNotAccepting:
            assert allowed is None, f"agent {agent} was refused work it may ask for"
            self.figures["refused"] += 1
            return
        assert allowed is not None, f"agent {agent} was given work while it may not ask"
        if assignment is None:
            assert allowed == [], "a READY task was not handed out"
            return
        assert assignment.task.id in allowed, "a task was handed out before an older one"
        self.model.lease(agent, assignment.task.id)
        assert assignment.attempt.attempt == self.model.tasks[assignment.task.id].attempt
        self.figures["claims"] += 1

    @precondition(lambda self: self.model.willing())
    @rule(data=st.data())
    def willing_agent_claims(self, data: st.DataObject) -> None:
        """An agent that may take work asks for it while there is some."""
        self.claim(data.draw(st.sampled_from(self.model.willing())))

    @precondition(lambda self: self.model.leased())
    @rule(
        data=st.data(),
        who=st.sampled_from(["last holder", "another agent"]),
        outcome=st.sampled_from([AttemptOutcome.COMPLETED, AttemptOutcome.FAILED]),
        claimed=st.sampled_from(["current", "previous", "none"]),
    )
    def report(self, data: st.DataObject, who: str, outcome: AttemptOutcome, claimed: str) -> None:
        """A result from the agent that held a task last (still holding it, or a zombie
        whose lease is gone) or from another one, for the current attempt or an old one."""
        task = data.draw(st.sampled_from(self.model.leased()))
        last = self.model.tasks[task].last_holder
        assert last is not None
        agent = last if who == "last holder" else (last + 1) % AGENTS
        self.result(agent, task, outcome, claimed)

    def result(self, agent: int, task: UUID, outcome: AttemptOutcome, claimed: str) -> None:
        known = self.model.tasks[task]
        number = {"current": known.attempt, "previous": known.attempt - 1, "none": None}[claimed]
        report = Report(
            task_id=task,
            outcome=outcome,
            attempt=number,
            artifacts=[new_artifact(ARTIFACT, f"attempt {known.attempt}".encode(), None)],
            error=None if outcome == AttemptOutcome.COMPLETED else "scripted failure",
        )
        accepted = self.model.accepts(agent, task, number)
        try:
            recorded = self.run(self.leases.report(self.agent_ids[agent], report))
        except LeaseLost:
            assert not accepted, f"the result of agent {agent}'s own lease was refused"
            self.figures["refused"] += 1
            return
        assert accepted, f"agent {agent}'s result for attempt {number} was taken"
        assert recorded.attempt.attempt == known.attempt
        self.model.close(task, outcome.value)
        self.figures["results"] += 1

    @rule(agent=st.integers(0, AGENTS - 1), subset=st.integers(0, 3), data=st.data())
    def heartbeat(self, agent: int, subset: int, data: st.DataObject) -> None:
        """A beat naming nothing (renew all), or some tasks (its own or not)."""
        named: list[UUID] | None = None
        if subset and self.model.tasks:
            named = data.draw(
                st.lists(st.sampled_from(list(self.model.tasks)), max_size=subset, unique=True)
            )
        beat = self.run(self.agents.heartbeat(self.agent_ids[agent], working_on=named))
        abort = self.model.beat(agent, named)
        assert sorted(beat.abort) == sorted(abort)
        renewed = {lease.task_id for lease in beat.leases}
        held = set(self.model.held_by(agent))
        assert renewed == (held if named is None else held & set(named))

    @rule(seconds=st.sampled_from([1, 5, 20, 31, 89, 91, 200]), reaper_runs=st.booleans())
    def time_passes(self, seconds: int, reaper_runs: bool) -> None:
        """The clock moves on; then the reaper runs its round, or has not yet."""
        self.model.now += timedelta(seconds=seconds)
        if not reaper_runs:
            return
        reaped = self.run(self.leases.reap())
        expected = self.model.reap()
        assert (reaped.expired, reaped.offline) == expected
        self.figures["reaped"] += reaped.expired + reaped.offline

    @precondition(lambda self: self.calm >= RESTART_EVERY)
    @rule()
    def restart(self) -> None:
        """A new orchestrator process: new connections, and its start time is now."""
        self.run(self.engine.dispose())
        self.model.started_at = self.model.now
        self._connect()
        self.calm = 0
        self.figures["restarts"] += 1

    @rule(task=tasks, goal=st.sampled_from([CANCELLED, COMPLETED, READY]))
    def operator_moves(self, task: UUID, goal: str) -> None:
        """An operator cancels or completes a task by hand, or sends a FAILED one back to
        the queue: a RUNNING task's lease ends then, not held against its agent."""
        allowed = goal in OPERATOR_MOVES[self.model.tasks[task].status]
        try:
            self.run(self.task_service.move(task, TaskStatus(goal)))
        except Conflict:
            assert not allowed, f"{self.model.tasks[task].status} -> {goal} was refused"
            return
        assert allowed, f"{self.model.tasks[task].status} -> {goal} was accepted"
        self.model.operator_moves(task, goal)

    # -- what must hold after every step ---------------------------------------------

    @invariant()
    def the_database_agrees_with_the_model(self) -> None:
        self.calm += 1
        stored, attempts, agents = self.run(self._read_all())
        for task_id, known in self.model.tasks.items():
            assert stored[task_id] == (known.status, known.attempt)
            mine = attempts.get(task_id, [])
            assert [number for number, _, _ in mine] == list(range(1, known.attempt + 1))
            closed = [outcome for _, _, outcome in mine if outcome is not None]
            assert closed == known.outcomes
            assert closed.count("completed") <= 1
            holders = [agent for _, agent, outcome in mine if outcome is None]
            expected_holder = [] if known.holder is None else [self.agent_ids[known.holder]]
            assert holders == expected_holder
            written = self.home / str(task_id) / ARTIFACT
            if known.completed_by is None:
                assert not written.exists(), "a refused or failed result wrote a file"
            else:
                assert written.read_bytes() == f"attempt {known.completed_by}".encode()
        for n, known_agent in enumerate(self.model.agents):
            status, busy, successes, failures = agents[self.agent_ids[n]]
            assert (status != AgentStatus.OFFLINE.value) == known_agent.online
            assert busy == len(self.model.held_by(n))
            assert (successes, failures) == (known_agent.successes, known_agent.failures)

    async def _read_all(self) -> tuple[dict[UUID, Any], dict[UUID, list[Any]], dict[UUID, Any]]:
        """Every task, attempt and agent as stored, in three queries (not through the
        services: a step's check must cost little, the services' reads are what the rules
        exercise)."""
        async with self.engine.connect() as connection:
            task_rows = await connection.execute(
                sa.select(tables.tasks.c.id, tables.tasks.c.status, tables.tasks.c.attempt)
            )
            attempt_rows = await connection.execute(
                sa.select(
                    tables.task_attempts.c.task_id,
                    tables.task_attempts.c.attempt,
                    tables.task_attempts.c.agent_id,
                    tables.task_attempts.c.outcome,
                ).order_by(tables.task_attempts.c.task_id, tables.task_attempts.c.attempt)
            )
            agent_rows = await connection.execute(
                sa.select(
                    tables.agents.c.id,
                    tables.agents.c.status,
                    tables.agents.c.tasks_in_progress,
                    tables.agents.c.success_count,
                    tables.agents.c.failure_count,
                )
            )
            stored = {row.id: (row.status, row.attempt) for row in task_rows}
            attempts: dict[UUID, list[Any]] = {}
            for row in attempt_rows:
                attempts.setdefault(row.task_id, []).append(
                    (row.attempt, row.agent_id, row.outcome)
                )
            agents = {row.id: tuple(row)[1:] for row in agent_rows}
        return stored, attempts, agents


def test_the_lease_services_behave_like_the_model(
    model_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    totals = {"steps": 0, "claims": 0, "results": 0, "refused": 0, "reaped": 0, "restarts": 0}

    class Counted(LeaseMachine):
        def __init__(self) -> None:
            super().__init__(model_database_url, tmp_path_factory.mktemp("artifacts"))

        def teardown(self) -> None:
            for name, value in self.figures.items():
                totals[name] += value
            super().teardown()

        @invariant()
        def count(self) -> None:
            totals["steps"] += 1

    # No shrinking: on real databases it takes minutes and reaches the test timeout; the
    # failing run printed as generated is a few dozen steps, readable as it is.
    run_state_machine_as_test(
        Counted,
        settings=hypothesis.settings(
            MODEL_SETTINGS,
            max_examples=40,
            stateful_step_count=15,
            phases=[hypothesis.Phase.generate],
        ),
    )
    print(
        f"\n[lease state machine ({backend_of(model_database_url)})] {totals['steps']} steps "
        f"checked against the model: {totals['claims']} leases, {totals['results']} results "
        f"taken, {totals['refused']} refusals foreseen (late, stale, foreign, offline, full), "
        f"{totals['reaped']} leases or agents reaped, {totals['restarts']} restarts, "
        "0 disagreements"
    )
