"""Forking a finished session from one of its checkpoints, on the real engine with a real
``orchestrator worker``: the fork starts from exactly the files of that checkpoint, does
only the tasks that were not finished by then (with the operator's extra instruction),
and both sessions show their lineage."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..cli.test_worker import WorkerProcess
from .test_engine_e2e import (
    COMMAND,
    serve,
    start_crud_session,
    tasks_of,
    wait_for_status,
    worktree_of,
)

pytestmark = pytest.mark.slow

AMENDMENT = "Also keep a changelog."


def git(tree: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, check=True
    ).stdout


def checkpoints(http: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    page = http.get(f"/api/v1/sessions/{session_id}/checkpoints", params={"page_size": 100})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def test_a_fork_starts_from_the_checkpoint_s_files_and_redoes_only_later_tasks(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "repo"
    workspace.mkdir()
    with serve(tmp_path, {}) as server, server.client() as http:
        server.start()
        worker = WorkerProcess(
            server.base_url,
            tmp_path / "worker-home",
            tmp_path / "workers",
            "--any-capability",
            "--command",
            COMMAND,
        )
        try:
            source = start_crud_session(http, workspace)
            assert wait_for_status(http, source, "COMPLETED", "FAILED")["status"] == "COMPLETED"
            source_tree = worktree_of(http, source, workspace, tmp_path / "home")
            # A checkpoint of the middle of the run: some tasks finished, some not.
            leaves = [t for t in tasks_of(http, source).values() if t["parent_id"] is not None]
            middle = [
                c
                for c in checkpoints(http, source)
                if c["label"].startswith("after task:")
                and 0 < len(c["data"]["finished_tasks"]) < len(leaves)
            ]
            assert middle, "no checkpoint between the first and the last task"
            chosen = sorted(middle, key=lambda c: len(c["data"]["finished_tasks"]))[
                len(middle) // 2
            ]
            finished_then = set(chosen["data"]["finished_tasks"])

            foreign = http.post(
                f"/api/v1/sessions/{source}/fork", json={"checkpoint_id": str(uuid.uuid4())}
            )
            assert foreign.status_code == 404, foreign.text

            forked = http.post(
                f"/api/v1/sessions/{source}/fork",
                json={"checkpoint_id": chosen["id"], "amendment": AMENDMENT, "start": True},
            )
            assert forked.status_code == 201, forked.text
            fork = forked.json()
            assert fork["forked_from"] == source
            assert fork["restored_from_checkpoint"] == chosen["id"]
            final = wait_for_status(http, fork["id"], "COMPLETED", "FAILED")
            assert final["status"] == "COMPLETED", (final, worker.output)
        finally:
            worker.kill()

        # Exactly the checkpoint's files to start from.
        fork_tree = worktree_of(http, fork["id"], workspace, tmp_path / "home")
        assert fork_tree != source_tree
        commit = chosen["data"]["commit"]
        assert final["base_commit"] == git(source_tree, "rev-parse", commit).strip()
        assert git(fork_tree, "ls-tree", "-r", final["base_commit"]) == git(
            source_tree, "ls-tree", "-r", commit
        )

        # Only the tasks not finished at the checkpoint were done again, with the
        # amendment; the finished ones were carried over, not redone.
        at_checkpoint = git(source_tree, "show", f"{commit}:done.log").split()
        runs = (fork_tree / "done.log").read_text().split()
        assert runs[: len(at_checkpoint)] == at_checkpoint
        fork_runs = runs[len(at_checkpoint) :]
        fork_tasks = tasks_of(http, fork["id"])
        fork_leaves = {t["id"]: t for t in fork_tasks.values() if t["parent_id"] is not None}
        assert len(fork_leaves) == len(leaves)
        redone = {fork_leaves[task_id]["title"] for task_id in fork_runs if task_id in fork_leaves}
        carried = {t["title"] for t in leaves if t["id"] in finished_then}
        assert redone == {t["title"] for t in leaves} - carried
        assert len(fork_runs) == len(set(fork_runs)), "a task of the fork ran twice"
        for task in fork_leaves.values():
            assert (AMENDMENT in task["description"]) == (task["title"] not in carried)

        # Both sessions show the lineage.
        assert http.get(f"/api/v1/sessions/{source}/lineage").json()["forks"] == [fork["id"]]
        lineage = http.get(f"/api/v1/sessions/{fork['id']}/lineage").json()
        assert (lineage["forked_from"], lineage["restored_from_checkpoint"]) == (
            source,
            chosen["id"],
        )
    print(
        f"\n[fork] forked at checkpoint #{chosen['seq']} ({len(finished_then)} of {len(leaves)} "
        f"tasks finished): files identical to its commit, {len(redone)} tasks redone, "
        f"{len(carried)} carried over, fork COMPLETED"
    )
