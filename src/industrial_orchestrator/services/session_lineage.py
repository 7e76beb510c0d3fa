"""A session's descendants: the retry of a session that ended badly, and forks from a checkpoint.

Neither touches the source session: a retry is a new session recording ``retry_of`` (at
most one per session, guarded by a unique index) that begins from the source's last
checkpoint; a fork is a new session recording ``forked_from`` that begins from any kept
checkpoint, with an optional amendment and changed options.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID, uuid4

import structlog

from ..domain import events
from ..domain.errors import AlreadyRetried, IllegalTransition, InvalidInput, NotFound
from ..domain.sessions.actions import SessionAction
from ..domain.sessions.options import session_options
from ..domain.sessions.session import Actor, Session, creation_record
from ..domain.sessions.states import RETRYABLE_STATES, SessionState
from .checkpoint_records import CheckpointRecords
from .ports import Clock, DuplicateKeyError, UnitOfWorkFactory
from .session_slots import RunningSlots
from .session_transitions import found, log_transition

log = structlog.get_logger("industrial_orchestrator.services.session")


@dataclass(frozen=True, slots=True)
class Fork:
    """What a fork starts from, and what it changes."""

    checkpoint_id: UUID
    amendment: str | None = None
    """An extra instruction for the tasks still to do."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Options (budget, verification, parallelism...) to change from the source's."""
    title: str | None = None
    start: bool = False


class SessionLineage:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        slots: RunningSlots,
        checkpoints: CheckpointRecords,
        clock: Clock,
    ) -> None:
        self._uow = uow
        self._slots = slots
        self._checkpoints = checkpoints
        self._clock = clock

    async def retry(self, session_id: UUID, *, start: bool = False) -> Session:
        """Create the next attempt of a FAILED, TIMEOUT or STOPPED session.

        The old session stays as it was; the new one records ``retry_of`` and begins from
        the old one's last checkpoint. A session is retried at most once.
        """
        async with self._uow() as uow:
            old = found(await uow.sessions.get(session_id), session_id)
            if old.status not in RETRYABLE_STATES:
                raise IllegalTransition(
                    f"Cannot retry session {session_id}: it is {old.status.value}; only "
                    "FAILED, TIMEOUT or STOPPED sessions can be retried",
                    {
                        "current_state": old.status.value,
                        "action": "retry",
                        "retryable_states": sorted(s.value for s in RETRYABLE_STATES),
                    },
                )
            already = await uow.sessions.find_retry(session_id)
            if already is not None:
                raise _already_retried(session_id, already.id)
            checkpoint = await uow.checkpoints.latest(session_id)
            now = self._clock()
            fresh = Session(
                id=uuid4(),
                title=old.title,
                initial_prompt=old.initial_prompt,
                priority=old.priority,
                status=SessionState.PENDING,
                workspace=old.workspace,
                metadata=dict(old.metadata),
                options=old.options,
                created_at=now,
                updated_at=now,
                retry_of=old.id,
                attempt=old.attempt + 1,
                restored_from_checkpoint=checkpoint.id if checkpoint else None,
            )
            try:
                await uow.sessions.add(fresh, None, None)
            except DuplicateKeyError:
                raced = await self.retried_as(session_id)
                raise _already_retried(session_id, raced) from None
            await uow.sessions.add_transition(
                replace(
                    creation_record(fresh, Actor.OPERATOR),
                    reason=f"retry of {old.id} (attempt {fresh.attempt})",
                )
            )
            await uow.events.append([events.session_created(fresh)])
            if checkpoint is not None:
                await self._checkpoints.write(
                    uow,
                    fresh.id,
                    label=checkpoint.label,
                    reason=f"restored from checkpoint {checkpoint.id} of session {old.id}",
                    data=checkpoint.data,
                )
            started = None
            if start:
                fresh, started = await self._slots.apply(uow, fresh, SessionAction.START, None)
            await uow.commit()
        log.info(
            "session_retried",
            session_id=str(fresh.id),
            retry_of=str(old.id),
            attempt=fresh.attempt,
            checkpoint_id=str(checkpoint.id) if checkpoint else None,
        )
        log_transition(started)
        await self._slots.rebalance(None, fresh)
        return fresh

    async def fork(self, session_id: UUID, fork: Fork) -> Session:
        """A new session that starts from one of ``session_id``'s checkpoints: its files
        (the working tree at the checkpoint's commit) and the tasks finished by then, with
        ``fork.amendment`` added to the prompt of the tasks still to do and
        ``fork.options`` instead of the source's, when given. The source is left as it is,
        in whatever state, and may be forked any number of times."""
        async with self._uow() as uow:
            source = found(await uow.sessions.get(session_id), session_id)
            checkpoint = await uow.checkpoints.get(fork.checkpoint_id)
            if checkpoint is None or checkpoint.session_id != session_id:
                raise NotFound(
                    f"Session {session_id} has no checkpoint {fork.checkpoint_id} (it may "
                    f"have been rotated out: only the newest {self._checkpoints.retention} "
                    "are kept)",
                    {"session_id": str(session_id), "checkpoint_id": str(fork.checkpoint_id)},
                )
            amendment = fork.amendment.strip() if fork.amendment else None
            options = session_options(
                **{**source.options.to_json(), **fork.overrides, "amendment": amendment}
            )
            if options.agents:
                known = {agent.name for agent in await uow.agents.all()}
                unknown = [name for name in options.agents if name not in known]
                if unknown:
                    raise InvalidInput(
                        "No agent is registered as " + ", ".join(repr(n) for n in unknown),
                        {"field": "agents", "unknown": unknown},
                    )
            prompt = source.initial_prompt
            if amendment:
                prompt = f"{prompt}\n\n{amendment}"
            now = self._clock()
            fresh = Session(
                id=uuid4(),
                title=fork.title or source.title,
                initial_prompt=prompt,
                priority=source.priority,
                status=SessionState.PENDING,
                workspace=source.workspace,
                metadata=dict(source.metadata),
                options=options,
                created_at=now,
                updated_at=now,
                forked_from=source.id,
                restored_from_checkpoint=checkpoint.id,
            )
            await uow.sessions.add(fresh, None, None)
            await uow.sessions.add_transition(
                replace(
                    creation_record(fresh, Actor.OPERATOR),
                    reason=f"fork of {source.id} at checkpoint #{checkpoint.seq} "
                    f"({checkpoint.label})",
                )
            )
            await uow.events.append([events.session_created(fresh)])
            await self._checkpoints.write(
                uow,
                fresh.id,
                label=checkpoint.label,
                reason=f"forked from checkpoint {checkpoint.id} of session {source.id}",
                data=checkpoint.data,
            )
            started = None
            if fork.start:
                fresh, started = await self._slots.apply(uow, fresh, SessionAction.START, None)
            await uow.commit()
        log.info(
            "session_forked",
            session_id=str(fresh.id),
            forked_from=str(source.id),
            checkpoint_id=str(checkpoint.id),
        )
        log_transition(started)
        await self._slots.rebalance(None, fresh)
        return fresh

    async def forks_of(self, session_id: UUID) -> list[UUID]:
        async with self._uow.reader() as uow:
            found(await uow.sessions.get(session_id), session_id)
            return await uow.sessions.forks_of(session_id)

    async def retried_as(self, session_id: UUID) -> UUID | None:
        """The session created to retry this one, if any."""
        async with self._uow.reader() as uow:
            retry = await uow.sessions.find_retry(session_id)
        return retry.id if retry else None


def _already_retried(session_id: UUID, retry_id: UUID | None) -> AlreadyRetried:
    return AlreadyRetried(
        f"Session {session_id} was already retried"
        + (f" as session {retry_id}; retry that one instead" if retry_id else ""),
        {"session_id": str(session_id), "retry_session_id": str(retry_id) if retry_id else None},
    )
