"""Checkpoints: the newest by number, pages newest first with the total, pruning."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from industrial_orchestrator.domain.sessions.checkpoint import Checkpoint
from industrial_orchestrator.services.ports import UnitOfWorkFactory

from .builders import at, committed, session


async def test_add_latest_list_and_prune(uow: UnitOfWorkFactory):
    current, other = session(0), session(1)
    await committed(uow, current, other)
    made = [
        Checkpoint(uuid4(), current.id, seq, f"c{seq}", None, at(seq), {"seq": seq, "t": (1,)})
        for seq in (1, 2, 3, 4)
    ]
    theirs = Checkpoint(uuid4(), other.id, 9, "theirs", "why", at(9), {})
    async with uow() as unit:
        assert await unit.checkpoints.latest(current.id) is None
        assert await unit.checkpoints.list(current.id, 0, 10) == ([], 0)
        for checkpoint in [made[2], made[0], made[3], made[1], theirs]:
            await unit.checkpoints.add(checkpoint)
        await unit.commit()
    # Data comes back as JSON gives it (a tuple as a list).
    back = [replace(checkpoint, data={"seq": checkpoint.seq, "t": [1]}) for checkpoint in made]
    async with uow() as unit:
        checkpoints = unit.checkpoints
        assert await checkpoints.get(made[1].id) == back[1]
        assert await checkpoints.latest(current.id) == back[3]
        assert await checkpoints.latest(other.id) == theirs
        assert await checkpoints.list(current.id, 0, 10) == (back[::-1], 4)
        assert await checkpoints.list(current.id, 1, 2) == ([back[2], back[1]], 4)
        assert await checkpoints.list(current.id, 7, 2) == ([], 4)
        assert await checkpoints.prune(current.id, 3) == 2
        assert await checkpoints.prune(current.id, 3) == 0
        await unit.commit()
    async with uow.reader() as unit:
        assert await unit.checkpoints.list(current.id, 0, 10) == ([back[3], back[2]], 2)
        assert await unit.checkpoints.get(made[0].id) is None
        assert await unit.checkpoints.latest(other.id) == theirs
