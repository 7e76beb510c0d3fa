"""Running slots: taking one, the verb that may need one, and the queue's promotion.

At most ``max_running`` sessions hold a running slot (MAX_CONCURRENT_SESSIONS); a session
that wants one when none is free waits QUEUED. A slot is a row a session takes in the
transaction that starts it and gives back in the one that moves it out of RUNNING or
DEGRADED (``record_transition``), so the rows held are the sessions running, and two
starts never take one slot, without waiting for each other. Only the queue is serialised:
entering it and promoting from it take the queue's lock, so a promotion serves the queue
as committed before it (priority, then age). Every commit that queues a session or frees
a slot looks at the queue afterwards, so free slots and a waiting queue never coexist
for long.
"""

from __future__ import annotations

from ..domain.sessions.actions import SessionAction, needs_slot, resolve_action
from ..domain.sessions.session import Actor, Session, Transition, transition
from ..domain.sessions.states import SessionState
from .ports import Clock, UnitOfWork, UnitOfWorkFactory
from .session_transitions import log_transition, record_transition


class RunningSlots:
    def __init__(self, uow: UnitOfWorkFactory, *, max_running: int, clock: Clock) -> None:
        self._uow = uow
        self._max_running = max_running
        self._clock = clock

    async def take(self, uow: UnitOfWork, session: Session, *, new: bool = False) -> bool:
        """Give ``session`` a free running slot in the caller's transaction; whether it
        got one (it keeps it only if the transaction commits). ``new``: added in it."""
        return await uow.sessions.take_running_slot(session.id, self._max_running, new=new)

    async def apply(
        self,
        uow: UnitOfWork,
        session: Session,
        action: SessionAction,
        reason: str | None,
        actor: Actor = Actor.OPERATOR,
        *,
        new: bool = False,
    ) -> tuple[Session, Transition]:
        """Apply an operator verb inside the caller's transaction, queueing the session
        when it needs a slot and none is free. ``new``: the session was added in it."""
        target = resolve_action(session, action, slot_free=True)
        if needs_slot(session, target):
            # A slot that just came free belongs to the queue (by priority, then age),
            # not to whoever starts at that moment: join the queue behind them.
            behind = session.status == SessionState.PENDING and await uow.sessions.anyone_queued()
            free = not behind and await self.take(uow, session, new=new)
            target = resolve_action(session, action, slot_free=free)
            if target == SessionState.QUEUED:
                # Into the queue in the order a promotion reads it: one that commits
                # after this sees this session queued.
                await uow.sessions.lock_queue()
        if target == SessionState.QUEUED and reason is None:
            reason = "all running slots taken (MAX_CONCURRENT_SESSIONS)"
        moved, record = transition(session, target, now=self._clock(), actor=actor, reason=reason)
        await record_transition(uow, session, moved, record)
        return moved, record

    async def rebalance(self, before: Session | None, after: Session) -> None:
        """Keep free slots and the queue from coexisting, after a commit.

        Two rules close every race between a session that queues and one that frees its
        slot at the same moment: whoever frees a slot looks at the queue after its own
        commit; whoever queues tries a promotion after its own commit. Whichever of the
        two commits last sees the other's commit.
        """
        queued_now = after.status == SessionState.QUEUED and (
            before is None or before.status != SessionState.QUEUED
        )
        freed = before is not None and before.holds_running_slot and not after.holds_running_slot
        if queued_now:
            await self.promote_queued()
        elif freed:
            async with self._uow.reader() as uow:
                if not await uow.sessions.anyone_queued():
                    return
            await self.promote_queued()

    async def promote_queued(self) -> list[Session]:
        """Start QUEUED sessions while running slots are free: CRITICAL first, then oldest."""
        promoted: list[Session] = []
        while True:
            async with self._uow() as uow:
                await uow.sessions.lock_queue()
                queued = await uow.sessions.next_queued()
                if queued is None:
                    break
                if not await self.take(uow, queued):
                    break
                moved, record = transition(
                    queued,
                    SessionState.RUNNING,
                    now=self._clock(),
                    actor=Actor.SCHEDULER,
                    reason="promoted from queue",
                )
                await record_transition(uow, queued, moved, record)
                await uow.commit()
            log_transition(record)
            promoted.append(moved)
        return promoted
