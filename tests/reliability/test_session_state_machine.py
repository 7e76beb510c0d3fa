"""A hypothesis state machine drives the real session service on SQLite and on
PostgreSQL (create, operator verbs with current or stale versions, system moves, retries,
checkpoints, restarts of the whole storage stack) and checks it after every step against
a pure model written from the user guide's state table, not from our code.

The model knows, for each session: its state, its version and how long its history is.
After each step every session read back from the database must agree, and every history
must run 1, 2, 3... with each record starting where the previous one ended."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from industrial_orchestrator.domain.errors import Conflict
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.actions import SessionAction
from industrial_orchestrator.domain.sessions.session import Actor
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.services.sessions import NewSession, SessionService, utc_now
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

from .model_databases import MODEL_SETTINGS, backend_of, connect, empty

pytestmark = pytest.mark.slow

# The model: user guide §5, "Valid Transitions", with ORPHANED from any non-terminal state
# (ARCHITECTURE.md §4) and the operator verbs of ARCHITECTURE.md §4.
P, Q, R, PA, D = "PENDING", "QUEUED", "RUNNING", "PAUSED", "DEGRADED"
C, PC, F, T, S, X, OR = (
    "COMPLETED",
    "PARTIALLY_COMPLETED",
    "FAILED",
    "TIMEOUT",
    "STOPPED",
    "CANCELLED",
    "ORPHANED",
)
NON_TERMINAL = {P, Q, R, PA, D}
MOVES = {
    P: {Q, R, X, F},
    Q: {R, X, F},
    R: {C, PC, F, T, PA, S, D},
    PA: {R, S, X},
    D: {R, F, C, S},
    PC: {R, C},
}
VERBS = {
    "start": {P: R, Q: R},
    "pause": {R: PA},
    "resume": {PA: R, D: R, PC: R},
    "complete": {R: C, D: C, PC: C},
    "fail": {P: F, Q: F, R: F, D: F},
    "cancel": {P: X, Q: X, PA: X},
    "stop": {R: S, PA: S, D: S},
}
RETRYABLE = {F, T, S}
ALL_STATES = [P, Q, R, PA, D, C, PC, F, T, S, X, OR]


def may_move(source: str, target: str) -> bool:
    return target in MOVES.get(source, set()) or (target == OR and source in NON_TERMINAL)


def settled(state: str, version: int, history: int) -> Modelled:
    """A session QUEUED while a slot is free is promoted to RUNNING at once (ARCHITECTURE
    §4: QUEUED means every slot is taken; the model's limit is never reached)."""
    if state == Q:
        return Modelled(R, version + 1, history + 1)
    return Modelled(state, version, history)


@dataclass
class Modelled:
    state: str
    version: int
    history: int
    checkpoints: int = 0


class SessionMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.model: dict[UUID, Modelled] = {}
        self.restarts = 0
        self.refusals = 0
        self._connect()
        self.run(empty(self.engine))

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def _connect(self) -> None:
        self.engine = connect(self.url)
        self.service = SessionService(
            SqlUnitOfWorkFactory(self.engine),
            max_running=10_000,
            checkpoint_retention=100,
            default_priority=Priority.MEDIUM,
            clock=utc_now,
        )

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()

    # -- rules -------------------------------------------------------------------------

    @rule(target=sessions, priority=st.sampled_from(list(Priority)))
    def create(self, priority: Priority) -> UUID:
        made = self.run(
            self.service.create(NewSession(title="model", initial_prompt="p", priority=priority))
        )
        self.model[made.session.id] = Modelled(P, 1, 1)
        return made.session.id

    @rule(session=sessions, verb=st.sampled_from(sorted(VERBS)), stale=st.booleans())
    def act(self, session: UUID, verb: str, stale: bool) -> None:
        known = self.model[session]
        expected = known.version - 1 if stale and known.version > 1 else known.version
        target = VERBS[verb].get(known.state)
        will_retry = verb == "start" and known.state in RETRYABLE and expected == known.version
        try:
            if verb == "start":
                started = self.run(self.service.start(session, expected_version=expected))
                moved, retried = started.session, started.retried
            else:
                moved = self.run(
                    self.service.act(
                        session, SessionAction(verb), reason="model", expected_version=expected
                    )
                )
                retried = False
        except Conflict:
            self.refusals += 1
            assert target is None or expected != known.version, (
                f"{verb} on {known.state} at v{known.version} was refused"
            )
            assert not will_retry, f"start on {known.state} should have made a retry"
            return
        assert expected == known.version, "a stale version was accepted"
        if retried:
            assert will_retry, f"start on {known.state} made a retry"
            assert moved.retry_of == session
            assert moved.status.value == R
            # The new attempt is a new session: from here on it is modelled like any other.
            _, copied = self.run(self.service.checkpoints(moved.id, offset=0, limit=1))
            self.model[moved.id] = Modelled(R, moved.version, moved.transition_seq, copied)
            return
        assert target is not None, f"{verb} on {known.state} was accepted"
        assert moved.status.value == target
        self.model[session] = Modelled(
            target, known.version + 1, known.history + 1, known.checkpoints
        )

    @rule(session=sessions, goal=st.sampled_from(ALL_STATES))
    def system_move(self, session: UUID, goal: str) -> None:
        known = self.model[session]
        try:
            moved = self.run(
                self.service.move(session, SessionState(goal), reason="system", actor=Actor.SYSTEM)
            )
        except Conflict:
            self.refusals += 1
            assert not may_move(known.state, goal), f"{known.state} -> {goal} refused"
            return
        assert may_move(known.state, goal), f"{known.state} -> {goal} accepted"
        assert moved.status.value == goal
        after = settled(goal, known.version + 1, known.history + 1)
        after.checkpoints = known.checkpoints
        self.model[session] = after

    @rule(session=sessions)
    def checkpoint(self, session: UUID) -> None:
        known = self.model[session]
        try:
            self.run(self.service.add_checkpoint(session, label="manual", reason="model", data={}))
        except Conflict:
            # A checkpoint closes with its session.
            assert known.state not in NON_TERMINAL | {PC}, "checkpoint refused on a live one"
            return
        known.checkpoints += 1

    @rule()
    def restart(self) -> None:
        """Drop every connection and build the storage stack again, as a new process."""
        self.run(self.engine.dispose())
        self._connect()
        self.restarts += 1

    # -- what must hold after every step ---------------------------------------------

    @invariant()
    def the_database_agrees_with_the_model(self) -> None:
        for session_id, known in self.model.items():
            stored = self.run(self.service.get(session_id))
            assert (stored.status.value, stored.version) == (known.state, known.version)
            history = self.run(self.service.history(session_id))
            assert [record.seq for record in history] == list(range(1, known.history + 1))
            for before, after in itertools.pairwise(history):
                assert after.from_state == before.to_state
            checkpoints, total = self.run(self.service.checkpoints(session_id, offset=0, limit=100))
            assert total == known.checkpoints
            assert sorted(c.seq for c in checkpoints) == list(range(1, total + 1))


def test_the_session_service_behaves_like_the_model(model_database_url: str) -> None:
    database_url = model_database_url
    counts = {"steps": 0, "refusals": 0, "restarts": 0}

    class Counted(SessionMachine):
        def __init__(self) -> None:
            super().__init__(database_url)

        def teardown(self) -> None:
            counts["refusals"] += self.refusals
            counts["restarts"] += self.restarts
            super().teardown()

        @invariant()
        def count(self) -> None:
            counts["steps"] += 1

    run_state_machine_as_test(
        Counted,
        settings=MODEL_SETTINGS,
    )
    backend = backend_of(database_url)
    print(
        f"\n[state machine ({backend})] {counts['steps']} steps checked against the model, "
        f"{counts['refusals']} refusals foreseen, {counts['restarts']} restarts, 0 disagreements"
    )
