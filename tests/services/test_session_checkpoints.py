"""The engine's automatic checkpoints of a session with a working tree (both backends):
several finished tasks found by one step are checkpointed together, one commit of the
tree for all of them, and each is still its own effect, found by its own key after a
crash. Tasks that changed no file make no commit: their checkpoints name the tree's
HEAD."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fastapi import FastAPI

from industrial_orchestrator.bootstrap import Components
from industrial_orchestrator.domain.effects import EffectKind, EffectState, pending_effect
from industrial_orchestrator.domain.errors import Conflict
from industrial_orchestrator.domain.sessions.checkpoint import Checkpoint, CheckpointEntry
from industrial_orchestrator.domain.sessions.checkpoint_schedule import PeriodicCheckpoints
from industrial_orchestrator.domain.sessions.progress import progress_of
from industrial_orchestrator.domain.sessions.session import Session, WorktreeBinding
from industrial_orchestrator.domain.tasks.task import TaskStatus, TaskType
from industrial_orchestrator.services.plan_advance import Advanced
from industrial_orchestrator.services.session_checkpoints import LastCheckpoint, SessionCheckpoints
from industrial_orchestrator.services.sessions import NewSession
from industrial_orchestrator.services.tasks import NewTask

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _checkpoints(components: Components) -> SessionCheckpoints:
    return SessionCheckpoints(
        components.uow,
        components.sessions,
        clock=lambda: datetime.now(UTC),
        interval=timedelta(seconds=300),
        trees=components.trees,
        ledger=components.ledger,
    )


async def _running_with_tree(components: Components) -> tuple[Session, Path]:
    created = await components.sessions.create(NewSession("s", "build it", auto_start=True))
    binding = await components.trees.prepare(created.session.id, None)
    session = await components.sessions.bind_worktree(
        created.session.id,
        WorktreeBinding(str(binding.path), binding.branch, binding.base_commit),
    )
    return session, binding.path


async def _finished(components: Components, session_id: UUID, *titles: str) -> None:
    for title in titles:
        task = await components.tasks.create(
            NewTask(title, TaskType.CODE_GENERATION, ["python"], 1.0, session_id=session_id)
        )
        for status in (TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.COMPLETED):
            await components.tasks.move(task.id, status, summary=f"{title} done")


async def _advanced(components: Components, session_id: UUID) -> Advanced:
    """What the engine's step hands over once the plan moved: the session, its tasks."""
    async with components.uow.reader() as uow:
        session = await uow.sessions.get(session_id)
        tasks = await uow.tasks.of_session(session_id)
    assert session is not None
    return Advanced(session, progress_of(tasks), tasks, opened=0, closed=0)


async def _recorded(components: Components, session_id: UUID) -> list[Checkpoint]:
    """The session's checkpoints, in the order they were taken."""
    items, _ = await components.sessions.checkpoints(session_id, offset=0, limit=100)
    return sorted(items, key=lambda c: c.seq)


async def _killed_after_the_commit(
    components: Components, checkpoints: SessionCheckpoints, session_id: UUID
) -> list[str]:
    """The after-task checkpoints taken by a process killed right after their commit;
    the commit made."""
    made: list[str] = []
    commit = components.trees.commit

    async def killed_after(path: Path, message: str, *, keys: tuple[str, ...] = ()) -> str:
        made.append(await commit(path, message, keys=keys))
        raise SystemExit("killed")

    components.trees.commit = killed_after  # type: ignore[method-assign,assignment]
    try:
        await checkpoints.after_finished_tasks(await _advanced(components, session_id))
    except SystemExit:
        pass
    finally:
        components.trees.commit = commit  # type: ignore[method-assign]
    return made


async def test_tasks_finished_together_get_one_checkpoint_each_and_one_commit(app: FastAPI):
    components: Components = app.state.components
    session, tree = await _running_with_tree(components)
    (tree / "result.txt").write_text("delivered\n")
    await _finished(components, session.id, "first", "second")
    checkpoints = _checkpoints(components)

    await checkpoints.after_finished_tasks(await _advanced(components, session.id))

    ordered = await _recorded(components, session.id)
    assert [c.label for c in ordered] == ["after task: first", "after task: second"]
    assert [len(c.data["finished_tasks"]) for c in ordered] == [1, 2]
    head = _git(tree, "rev-parse", "HEAD")
    assert {c.data["commit"] for c in ordered} == {head}
    assert session.worktree is not None
    assert _git(tree, "rev-list", "--count", f"{session.worktree.base_commit}..HEAD") == "1"
    assert _git(tree, "show", f"{head}:result.txt") == "delivered"
    effects, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [e.state for e in effects] == [EffectState.DONE, EffectState.DONE]
    for effect in effects:
        assert await components.trees.find_commit(tree, effect.key) == head

    # Taken again (a step repeated): nothing more.
    await checkpoints.after_finished_tasks(await _advanced(components, session.id))
    assert (await components.sessions.checkpoints(session.id, offset=0, limit=100))[1] == 2
    assert _git(tree, "rev-parse", "HEAD") == head


async def test_no_checkpoint_while_a_finished_task_s_files_are_still_being_written(
    app: FastAPI,
):
    """Its commit would lack them, and the plan must not end before they are there: the
    step is refused as a race lost (the engine steps the session again), nothing
    promised; once they are written the checkpoint is taken."""
    components: Components = app.state.components
    session, _ = await _running_with_tree(components)
    await _finished(components, session.id, "first")
    write = pending_effect(
        "write:delivered:1", EffectKind.WORKSPACE_WRITE, now=NOW, session_id=session.id
    )
    ((write, _),) = await components.ledger.begin_all([write])
    checkpoints = _checkpoints(components)

    with pytest.raises(Conflict, match="still being written"):
        await checkpoints.after_finished_tasks(await _advanced(components, session.id))

    assert (await components.sessions.checkpoints(session.id, offset=0, limit=100))[1] == 0
    effects, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [e.key for e in effects] == [write.key]
    await components.ledger.finish(write, {"written": []})
    await checkpoints.after_finished_tasks(await _advanced(components, session.id))
    items = await _recorded(components, session.id)
    assert [c.label for c in items] == ["after task: first"]


async def test_after_a_crash_past_the_shared_commit_each_checkpoint_is_found_by_its_key(
    app: FastAPI,
):
    components: Components = app.state.components
    session, tree = await _running_with_tree(components)
    (tree / "result.txt").write_text("delivered\n")
    await _finished(components, session.id, "first", "second")
    checkpoints = _checkpoints(components)
    # What a process killed after the commit leaves: the effects PENDING, the commit made.
    made = await _killed_after_the_commit(components, checkpoints, session.id)
    pending, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [e.state for e in pending] == [EffectState.PENDING, EffectState.PENDING]
    assert (await components.sessions.checkpoints(session.id, offset=0, limit=100))[1] == 0

    for effect in pending:  # the recovery round, one effect at a time
        await checkpoints.finish(effect)

    items = await _recorded(components, session.id)
    assert sorted(c.label for c in items) == ["after task: first", "after task: second"]
    assert {c.data["commit"] for c in items} == set(made)
    assert _git(tree, "rev-parse", "HEAD") == made[0]  # no second commit
    done, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [e.state for e in done] == [EffectState.DONE, EffectState.DONE]


async def test_a_periodic_checkpoint_that_would_repeat_the_last_is_only_a_look(app: FastAPI):
    components: Components = app.state.components
    session, tree = await _running_with_tree(components)
    await _finished(components, session.id, "first")
    now = [datetime.now(UTC)]
    checkpoints = SessionCheckpoints(
        components.uow,
        components.sessions,
        clock=lambda: now[0],
        interval=timedelta(seconds=300),
        trees=components.trees,
        ledger=components.ledger,
    )
    await checkpoints.after_finished_tasks(await _advanced(components, session.id))

    async def periodic_look() -> list[str]:
        now[0] += timedelta(seconds=301)
        async with components.uow.reader() as uow:
            current = await uow.sessions.get(session.id)
            latest = await uow.checkpoints.latest(session.id)
        assert current is not None
        await checkpoints.periodically(current, latest)
        return [c.label for c in await _recorded(components, session.id)]

    head = _git(tree, "rev-parse", "HEAD")
    # Nothing happened since: no checkpoint, no commit; the look is kept on the session.
    assert await periodic_look() == ["after task: first"]
    assert _git(tree, "rev-parse", "HEAD") == head
    looked = (await components.sessions.get(session.id)).checkpoint_checked_at
    assert looked == now[0]
    # The next look is an interval later, not at once.
    assert not PeriodicCheckpoints(timedelta(seconds=300)).due(
        last=None, started=None, checked=looked, now=now[0] + timedelta(seconds=299)
    )
    # The agent's files changed in the tree: that is worth a checkpoint.
    (tree / "work in progress.txt").write_text("half done\n")
    assert await periodic_look() == ["after task: first", "periodic"]
    assert _git(tree, "show", "HEAD:work in progress.txt") == "half done"
    # So is a change of the tasks alone.
    await _finished(components, session.id, "second")
    labels = await periodic_look()
    assert labels[1:] == ["periodic", "periodic"]


async def test_the_last_checkpoint_the_step_read_is_not_read_again(app: FastAPI):
    """Handed the last checkpoint as the step read it, the after-task checkpoints go by
    it; without it, they read it."""
    components: Components = app.state.components
    session, _ = await _running_with_tree(components)
    await _finished(components, session.id, "first", "second")
    advanced = await _advanced(components, session.id)
    both = {str(task.id): {} for task in advanced.progress.finished}
    checkpoints = _checkpoints(components)

    # What the step read says both are recorded (as if a checkpoint was taken meanwhile):
    # it is believed, and nothing is read or taken.
    said = Checkpoint(uuid4(), session.id, 1, "said", None, NOW, {"finished_tasks": both})
    await checkpoints.after_finished_tasks(advanced, LastCheckpoint(said))
    assert (await components.sessions.checkpoints(session.id, offset=0, limit=100))[1] == 0
    # Nothing handed over: the last checkpoint is read (there is none), both are taken.
    await checkpoints.after_finished_tasks(advanced)
    assert (await components.sessions.checkpoints(session.id, offset=0, limit=100))[1] == 2


async def test_tasks_that_changed_no_file_are_checkpointed_at_the_tree_s_head(app: FastAPI):
    """No empty commit on the session's branch and no promise in the ledger: nothing is
    done outside the database. Files in the tree (not ignored ones) make a commit."""
    components: Components = app.state.components
    session, tree = await _running_with_tree(components)
    assert session.worktree is not None
    base = session.worktree.base_commit
    (tree / ".gitignore").write_text("*.log\n")
    first = await components.trees.commit(tree, "the agent's own commit")
    (tree / "build.log").write_text("ignored\n")
    await _finished(components, session.id, "first", "second")
    checkpoints = _checkpoints(components)

    await checkpoints.after_finished_tasks(await _advanced(components, session.id))

    ordered = await _recorded(components, session.id)
    assert [c.label for c in ordered] == ["after task: first", "after task: second"]
    assert [c.data["commit"] for c in ordered] == [first, first]
    assert [c.data["branch"] for c in ordered] == [session.worktree.branch] * 2
    assert [len(c.data["finished_tasks"]) for c in ordered] == [1, 2]
    assert _git(tree, "rev-list", "--count", f"{base}..HEAD") == "1"
    assert (await components.ledger.of_session(session.id, offset=0, limit=100))[1] == 0

    # A task that left a file: committed, as an effect.
    (tree / "result.txt").write_text("delivered\n")
    await _finished(components, session.id, "third")
    await checkpoints.after_finished_tasks(await _advanced(components, session.id))
    items = await _recorded(components, session.id)
    third = max(items, key=lambda c: c.seq)
    assert third.label == "after task: third"
    assert third.data["commit"] == _git(tree, "rev-parse", "HEAD") != first
    assert _git(tree, "show", f"{third.data['commit']}:result.txt") == "delivered"
    effects, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [e.state for e in effects] == [EffectState.DONE]


async def test_a_checkpoint_at_the_head_is_not_recorded_after_another_taken_meanwhile(
    app: FastAPI,
):
    """Recorded without a promise in the ledger, a checkpoint is guarded by the number of
    the last one the step read: a step that read an older one (a process that lost the
    session, say) records nothing and is told so; the step run again records it once."""
    components: Components = app.state.components
    session, _ = await _running_with_tree(components)
    await _finished(components, session.id, "first")
    advanced = await _advanced(components, session.id)
    checkpoints = _checkpoints(components)
    await components.sessions.add_checkpoints(
        session.id, [CheckpointEntry("by hand", None, {"note": "taken meanwhile"})]
    )

    with pytest.raises(Conflict, match="has a checkpoint after number 0"):
        await checkpoints.after_finished_tasks(advanced, LastCheckpoint(None))

    items = await _recorded(components, session.id)
    assert [c.label for c in items] == ["by hand"]
    await checkpoints.after_finished_tasks(advanced)
    await checkpoints.after_finished_tasks(advanced)
    items = await _recorded(components, session.id)
    assert sorted(c.label for c in items) == ["after task: first", "by hand"]


async def test_a_moment_s_checkpoint_of_an_unchanged_tree_names_its_head(app: FastAPI):
    """``take`` (once planned, at a verdict) of a tree with nothing to commit: no commit,
    no effect. Outrun by another checkpoint, it falls back to the promise's way, which
    settles the moment by its key."""
    components: Components = app.state.components
    session, tree = await _running_with_tree(components)
    assert session.worktree is not None
    base = session.worktree.base_commit
    checkpoints = _checkpoints(components)

    await checkpoints.take(session.id, "planned", "1 task(s)", moment="planned")

    items = await _recorded(components, session.id)
    assert [(c.label, c.data["commit"]) for c in items] == [("planned", base)]
    assert _git(tree, "rev-parse", "HEAD") == base
    assert (await components.ledger.of_session(session.id, offset=0, limit=100))[1] == 0

    # Another checkpoint lands between the read of the last one and the record.
    add = components.sessions.add_checkpoints

    async def outrun(
        session_id: UUID, entries: list[CheckpointEntry], *, after_seq: int | None = None
    ) -> list[Checkpoint]:
        if after_seq is not None:
            await add(session_id, [CheckpointEntry("by hand", None, {})])
        return await add(session_id, entries, after_seq=after_seq)

    components.sessions.add_checkpoints = outrun  # type: ignore[method-assign,assignment]
    try:
        await checkpoints.take(session.id, "verified", "passed", moment="verified:1")
    finally:
        components.sessions.add_checkpoints = add  # type: ignore[method-assign]
    items = await _recorded(components, session.id)
    assert [c.label for c in items] == [
        "planned",
        "by hand",
        "verified",
    ]
    effects, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [(e.key, e.state) for e in effects] == [
        (f"checkpoint:{session.id}:verified:1", EffectState.DONE)
    ]


async def test_a_checkpoint_a_dead_process_promised_is_not_recorded_again_at_its_commit(
    app: FastAPI,
):
    """A process killed after its checkpoint's commit leaves the tree clean at that
    commit and the promise PENDING: the next step settles the promise by its key (one
    checkpoint, its effect DONE), not a second checkpoint at the tree's HEAD, and the
    recovery round then finds nothing left to do."""
    components: Components = app.state.components
    session, tree = await _running_with_tree(components)
    (tree / "result.txt").write_text("delivered\n")
    await _finished(components, session.id, "first")
    checkpoints = _checkpoints(components)
    made = await _killed_after_the_commit(components, checkpoints, session.id)
    assert await components.trees.clean_head(tree) == made[0]

    await checkpoints.after_finished_tasks(await _advanced(components, session.id))
    (pending,) = (await components.ledger.of_session(session.id, offset=0, limit=100))[0]
    await checkpoints.finish(pending)  # the recovery round, late

    items = await _recorded(components, session.id)
    assert [(c.label, c.data["commit"]) for c in items] == [("after task: first", made[0])]
    done, _ = await components.ledger.of_session(session.id, offset=0, limit=100)
    assert [e.state for e in done] == [EffectState.DONE]
    assert _git(tree, "rev-parse", "HEAD") == made[0]
