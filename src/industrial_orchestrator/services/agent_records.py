"""Reading agents' records per task type (``domain.agents.records``) inside a use case.

Records are read fresh from the attempts each time a decision needs them (one query over
the agents in question): they change with every result, and the routable-agent snapshot
(``agent_snapshots``) holds agent rows only, so a snapshot can never serve a stale record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from ..domain.agents.records import HORIZON, WINDOW, AgentRecord, RecordKey, summarise
from ..domain.tasks.task import TaskType
from .ports import UnitOfWork


async def load_records(
    uow: UnitOfWork,
    *,
    agent_ids: Sequence[UUID] | None,
    task_types: Sequence[TaskType] | None,
    now: datetime,
) -> dict[RecordKey, AgentRecord]:
    """The records of ``agent_ids`` for ``task_types`` (None: all), by (agent, type)."""
    finished = await uow.attempts.recent_results(
        agent_ids=agent_ids, task_types=task_types, since=now - HORIZON, per_pair=WINDOW
    )
    return summarise(finished)
