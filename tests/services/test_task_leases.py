"""Claims and results given the agent's record as the caller read it (the API's
authentication): a record gone stale meanwhile never overwrites what changed since."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from fastapi import FastAPI

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, AgentStatus, NewAgent
from industrial_orchestrator.domain.sessions.session import WorktreeBinding
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.lease_rules import AgentNotAccepting
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType
from industrial_orchestrator.services.agents import AgentService
from industrial_orchestrator.services.sessions import NewSession
from industrial_orchestrator.services.task_leases import Report, TaskLeases
from industrial_orchestrator.services.tasks import NewTask, TaskService
from industrial_orchestrator.storage.task_repository import SqlTaskRepository


def _services(app: FastAPI) -> tuple[AgentService, TaskService, TaskLeases]:
    components = app.state.components
    return components.agents, components.tasks, components.leases


async def _ready(tasks: TaskService) -> None:
    task = await tasks.create(NewTask("work", TaskType.CODE_GENERATION, ["python"], 1.0))
    await tasks.move(task.id, TaskStatus.READY)


async def _agent(agents: AgentService) -> Agent:
    return await agents.register(
        NewAgent("worker", "implementer", ["python"], kind=AgentKind.EXTERNAL)
    )


async def _workers_and_ready_tasks(
    agents: AgentService, tasks: TaskService, count: int
) -> list[Agent]:
    workers = [
        await agents.register(
            NewAgent(f"worker-{n}", "implementer", ["python"], kind=AgentKind.EXTERNAL)
        )
        for n in range(count)
    ]
    for _ in range(count):
        await _ready(tasks)
    return workers


async def _claimed_together(leases: TaskLeases, workers: list[Agent]) -> list[UUID]:
    """The tasks the workers leased, asking all at once."""
    assignments = await asyncio.gather(
        *(leases.claim(worker.id, agent=worker) for worker in workers)
    )
    return [assignment.task.id for assignment in assignments if assignment is not None]


async def test_a_claim_from_a_stale_record_books_the_lease_on_the_current_one(app: FastAPI):
    agents, tasks, leases = _services(app)
    stale = await _agent(agents)
    await agents.heartbeat(stale.id, metrics={"beat": 1})  # the record moves on
    await _ready(tasks)

    assignment = await leases.claim(stale.id, agent=stale)

    assert assignment is not None
    now = await agents.get(stale.id)
    assert now.tasks_in_progress == 1
    assert now.metadata["metrics"] == {"beat": 1}  # the heartbeat's write kept
    assert now.version == stale.version + 2


async def test_a_claim_from_a_stale_record_still_refuses_an_agent_gone_busy(app: FastAPI):
    agents, tasks, leases = _services(app)
    stale = await _agent(agents)
    await agents.heartbeat(stale.id, status=AgentStatus.BUSY)
    await _ready(tasks)

    # The look goes by the record given; the write reads the agent again, and says no.
    with pytest.raises(AgentNotAccepting):
        await leases.claim(stale.id, agent=stale)
    assert (await agents.get(stale.id)).tasks_in_progress == 0
    [task] = (await tasks.search())[0]
    assert task.status == TaskStatus.READY


async def test_a_result_whose_agent_moved_on_meanwhile_is_booked_on_the_current_one(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
):
    agents, tasks, leases = _services(app)
    agent = await _agent(agents)
    await _ready(tasks)
    assignment = await leases.claim(agent.id)
    assert assignment is not None
    stale = await agents.get(agent.id)
    await agents.heartbeat(agent.id, metrics={"beat": 2})
    # The result's first read gives the record as it was before the heartbeat, as if the
    # heartbeat had committed between that read and the result's commit.
    real = SqlTaskRepository.lock_session_family_for
    reads: list[Agent | None] = []

    async def first_read_stale(
        self: SqlTaskRepository, task_id: UUID, agent_id: UUID
    ) -> tuple[Agent | None, UUID | None]:
        found, session_id = await real(self, task_id, agent_id)
        reads.append(found)
        return (stale if len(reads) == 1 else found), session_id

    monkeypatch.setattr(SqlTaskRepository, "lock_session_family_for", first_read_stale)

    recorded = await leases.report(
        agent.id, Report(task_id=assignment.task.id, outcome=AttemptOutcome.COMPLETED)
    )

    assert len(reads) == 2  # the commit refused the stale record: the result again
    assert recorded.task.status == TaskStatus.COMPLETED
    now = await agents.get(agent.id)
    assert (now.tasks_in_progress, now.success_count) == (0, 1)
    assert now.metadata["metrics"] == {"beat": 2}


async def test_agents_woken_together_each_lease_a_different_task(app: FastAPI):
    """Agents that ask at once look at the same waiting tasks; each leases the first one
    no other claimer holds (PostgreSQL skips the held rows without waiting), so all of
    them get work while there is some, and no task goes to two of them."""
    agents, tasks, leases = _services(app)
    workers = await _workers_and_ready_tasks(agents, tasks, 6)

    leased = await _claimed_together(leases, workers)
    assert len(leased) == len(set(leased)) == 6
    ready = [task for task in (await tasks.search())[0] if task.status == TaskStatus.READY]
    assert ready == []


async def test_claims_of_one_process_do_not_try_what_its_other_claims_took(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
):
    """Agents woken together looked at the same tasks: each claim passes over the tasks
    the process leased since its look, and tries last those another of its claims is
    leasing, so no guarded save of a task is lost on one another claim took."""
    agents, tasks, leases = _services(app)
    workers = await _workers_and_ready_tasks(agents, tasks, 6)
    lost: list[bool] = []
    save = SqlTaskRepository.save

    async def counted(self: SqlTaskRepository, before: Task, after: Task, **options: bool) -> bool:
        saved = await save(self, before, after, **options)
        if after.status == TaskStatus.RUNNING and not saved:
            lost.append(True)
        return saved

    monkeypatch.setattr(SqlTaskRepository, "save", counted)
    leased = await _claimed_together(leases, workers)
    assert len(leased) == len(set(leased)) == 6
    assert lost == []


async def test_a_claim_works_in_its_session_s_worktree_once_bound(app: FastAPI, tmp_path):
    """Before its session has a worktree a task works in the session's workspace; once
    the worktree is bound, every later claim of the session works there (the binding is
    remembered only once made)."""
    agents, tasks, leases = _services(app)
    sessions = app.state.components.sessions
    workspace = tmp_path / "repo"
    workspace.mkdir()
    created = await sessions.create(
        NewSession("s", "p", workspace=str(workspace)), idempotency_key=None
    )
    session_id = created.session.id
    await sessions.start(session_id)
    for _ in range(3):
        task = await tasks.create(
            NewTask("work", TaskType.CODE_GENERATION, ["python"], 1.0, session_id=session_id)
        )
        await tasks.move(task.id, TaskStatus.READY)
    agent = await agents.register(
        NewAgent(
            "worker", "implementer", ["python"], kind=AgentKind.EXTERNAL, max_concurrent_tasks=3
        )
    )

    before = await leases.claim(agent.id)
    tree = tmp_path / "tree"
    await sessions.bind_worktree(session_id, WorktreeBinding(str(tree), "orchestrator/s", "0" * 40))
    after = [await leases.claim(agent.id) for _ in range(2)]

    assert before is not None
    assert before.workspace == workspace
    assert [a.workspace for a in after if a is not None] == [tree, tree]
