"""Writing a result's artifacts into the workspace, after the result's commit.

The write is an effect (``effects.EffectLedger``): the result's transaction records it
PENDING with the artifacts, so a task is done only with its files promised; the files
are written after the commit, and the write is marked DONE with a line on the session's
terminal. A write a dead process left PENDING is finished from the stored artifacts
(``finish_write``), leaving alone the files already on disk as delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from uuid import UUID

import structlog

from ..domain.effects import Effect
from ..domain.errors import OrchestratorError
from ..domain.events import LogStream, log_lines
from ..domain.tasks.artifacts import Artifact
from ..domain.tasks.task import Task
from ..domain.tasks.workspaces import workspace_of
from .effects import EffectLedger
from .ports import ArtifactWriter, Clock, UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("industrial_orchestrator.services.task_leases")


async def task_workspace(uow: UnitOfWork, task: Task, artifacts_home: Path) -> Path:
    """Where ``task``'s work lands (``domain.tasks.workspaces``), read in ``uow``."""
    session = await uow.sessions.get(task.session_id) if task.session_id else None
    return workspace_of(task, session, artifacts_home)


class ResultFiles:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        clock: Clock,
        writer: ArtifactWriter,
        ledger: EffectLedger,
        artifacts_home: Path,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._writer = writer
        self._ledger = ledger
        self._home = artifacts_home

    def check(self, root: Path, artifacts: Sequence[Artifact]) -> None:
        """Refuse (before anything is recorded) artifacts that may not be written under
        ``root``."""
        for artifact in artifacts:
            self._writer.check(root, PurePosixPath(artifact.path))

    def write(self, root: Path, task_id: UUID, artifacts: Sequence[Artifact]) -> list[str]:
        """Write the artifacts under ``root``; the paths written."""
        written: list[str] = []
        for artifact in artifacts:
            try:
                self._writer.write(root, PurePosixPath(artifact.path), artifact.content)
            except (OrchestratorError, OSError) as exc:
                # Stored in the database all the same; the workspace changed under us.
                log.warning(
                    "artifact_not_written",
                    task_id=str(task_id),
                    path=artifact.path,
                    error=str(exc),
                )
                continue
            written.append(artifact.path)
        return written

    async def finish_write(self, effect: Effect) -> None:
        """Finish a write a dead process left PENDING: the attempt's files that are not
        on disk as delivered are written; those that are, are left alone."""
        if effect.task_id is None:
            return
        async with self._uow.reader() as uow:
            task = await uow.tasks.get(effect.task_id)
            if task is None:
                await self._ledger.finish(effect, {"outcome": "the task is gone"})
                return
            artifacts = await uow.attempts.delivered(task.id, int(effect.detail.get("attempt", 0)))
            root = await task_workspace(uow, task, self._home)
        written: list[str] = []
        already: list[str] = []
        for artifact in artifacts:
            relative = PurePosixPath(artifact.path)
            try:
                if self._writer.read(root, relative) == artifact.content:
                    already.append(artifact.path)
                    continue
                self._writer.write(root, relative, artifact.content)
            except (OrchestratorError, OSError) as exc:
                log.warning(
                    "artifact_not_written", task_id=str(task.id), path=artifact.path, error=str(exc)
                )
                continue
            written.append(artifact.path)
        await self.files_written(effect, written, already)

    async def files_written(self, effect: Effect, written: list[str], already: list[str]) -> None:
        """Mark the write DONE, with a line on the session's terminal (whose commit also
        wakes the agents waiting for the session's next tasks)."""
        now = self._clock()
        async with self._uow() as uow:
            if not await self._ledger.finish_in(
                uow, effect, {"written": written, "already": already}
            ):
                return
            if effect.session_id is not None:
                text = f"wrote {len(written)} file(s) of task {effect.task_id}"
                if already:
                    text += f"; {len(already)} were there already (written before a restart)"
                await uow.events.append(
                    log_lines(effect.session_id, LogStream.SYSTEM, text + "\n", now)
                )
            await uow.commit()
