"""A session's own working tree made, found again, forked and removed
(``workspaces/worktrees.py``), against real git in a temporary directory."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.errors import WorkspaceGone
from industrial_orchestrator.domain.workspace_roots import branch_name
from industrial_orchestrator.workspaces.bindings import Binding
from industrial_orchestrator.workspaces.git_commands import (
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    WorkspaceError,
)
from industrial_orchestrator.workspaces.worktrees import GitWorktrees

from .operator_git import files, git, git_fails, operator_state

pytestmark = pytest.mark.usefixtures("no_git_config")


async def test_two_sessions_on_one_repo_never_see_each_others_files(
    worktrees: GitWorktrees, repo: Path
) -> None:
    first, second = uuid4(), uuid4()
    a = await worktrees.prepare(first, repo)
    b = await worktrees.prepare(second, repo)
    assert a.path != b.path
    assert a.base_commit == b.base_commit == git(repo, "rev-parse", "HEAD")

    (a.path / "only_a.txt").write_text("a\n")
    (b.path / "src" / "app.py").write_text("print('b')\n")
    assert not (b.path / "only_a.txt").exists()
    assert (a.path / "src" / "app.py").read_text() == "print('v2')\n"

    sha_a = await worktrees.commit(a.path, "a's checkpoint")
    sha_b = await worktrees.commit(b.path, "b's checkpoint")
    assert await worktrees.changed_files(a.path, a.base_commit) == ["only_a.txt"]
    assert await worktrees.changed_files(b.path, b.base_commit) == ["src/app.py"]
    assert git(repo, "rev-parse", f"refs/heads/{a.branch}") == sha_a
    assert git(repo, "rev-parse", f"refs/heads/{b.branch}") == sha_b


async def test_the_worktree_is_a_checkout_of_head_on_the_sessions_branch(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path
) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, repo)
    assert binding == Binding(
        path=tmp_path / "home" / "worktrees" / str(session_id),
        branch=branch_name(session_id),
        base_commit=git(repo, "rev-parse", "HEAD"),
        source=repo,
    )
    # HEAD's files, not the operator's uncommitted change nor their untracked file.
    assert files(binding.path) == {
        "README.md": b"hello\n",
        ".gitignore": b"*.log\n",
        "src/app.py": b"print('v2')\n",
    }
    assert git(binding.path, "symbolic-ref", "--short", "HEAD") == binding.branch


async def test_the_operators_checkout_is_untouched_and_the_branch_stays(
    worktrees: GitWorktrees, repo: Path
) -> None:
    before = operator_state(repo)
    index_before = (repo / ".git" / "index").read_bytes()
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, repo)
    (binding.path / "README.md").write_text("changed by the agent\n")
    (binding.path / "new.py").write_text("x = 1\n")
    sha = await worktrees.commit(binding.path, "agent work")
    await worktrees.restore(binding.path, binding.base_commit)
    await worktrees.restore(binding.path, sha)
    await worktrees.remove(session_id)

    assert operator_state(repo) == before
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert not binding.path.exists()
    # The branch is the operator's to merge, with the agent's work on it.
    assert git(repo, "rev-parse", f"refs/heads/{binding.branch}") == sha
    assert git(repo, "show", f"{binding.branch}:new.py") == "x = 1"
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    commit = git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", binding.branch)
    assert commit == f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>|{AUTHOR_NAME} <{AUTHOR_EMAIL}>"


async def test_no_workspace_gives_an_empty_repository_with_one_commit(
    worktrees: GitWorktrees,
) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, None)
    assert binding.source is None
    assert binding.branch == branch_name(session_id)
    assert files(binding.path) == {}
    assert git(binding.path, "rev-list", "--count", "HEAD") == "1"
    assert git(binding.path, "symbolic-ref", "--short", "HEAD") == binding.branch
    assert git(binding.path, "rev-parse", "HEAD") == binding.base_commit


async def test_a_repository_with_no_commit_is_snapshotted_without_being_modified(
    worktrees: GitWorktrees, tmp_path: Path
) -> None:
    repo = tmp_path / "unborn"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("x = 1\n")
    (repo / "skip.log").write_text("ignored\n")
    (repo / ".gitignore").write_text("*.log\n")
    before = files(repo)

    binding = await worktrees.prepare(uuid4(), repo)
    assert binding.source == repo
    assert set(files(binding.path)) == {"app.py", ".gitignore"}
    assert git(binding.path, "rev-list", "--count", "HEAD") == "1"
    # Still no commit on the operator's branch, no index, nothing else changed.
    assert git_fails(repo, "rev-parse", "--verify", "-q", "HEAD")
    assert not (repo / ".git" / "index").exists()
    assert files(repo) == before
    assert git(repo, "rev-parse", f"refs/heads/{binding.branch}") == binding.base_commit


async def test_a_directory_inside_a_repository_checks_out_the_whole_repository(
    worktrees: GitWorktrees, repo: Path
) -> None:
    binding = await worktrees.prepare(uuid4(), repo / "src")
    assert binding.source == repo
    inside = binding.path / (repo / "src").relative_to(binding.source)
    assert (inside / "app.py").read_text() == "print('v2')\n"


async def test_prepare_is_idempotent_across_restarts(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path
) -> None:
    session_id = uuid4()
    first = await worktrees.prepare(session_id, repo)
    (first.path / "work.txt").write_text("in progress\n")
    assert await worktrees.prepare(session_id, repo) == first
    # A new process (same home) finds the binding, and the work in progress is still there.
    restarted = GitWorktrees(tmp_path / "home")
    assert await restarted.prepare(session_id, repo) == first
    assert (first.path / "work.txt").read_text() == "in progress\n"
    # A bound session stays bound whatever workspace is named later.
    assert await restarted.prepare(session_id, None) == first
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 2

    fresh_id = uuid4()
    fresh = await worktrees.prepare(fresh_id, None)
    assert await restarted.prepare(fresh_id, None) == fresh


async def test_a_vanished_worktree_is_reattached_from_its_branch(
    worktrees: GitWorktrees, repo: Path
) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, repo)
    (binding.path / "kept.txt").write_text("checkpointed\n")
    sha = await worktrees.commit(binding.path, "checkpoint")
    shutil.rmtree(binding.path)

    assert await worktrees.prepare(session_id, repo) == binding
    assert (binding.path / "kept.txt").read_text() == "checkpointed\n"
    assert git(binding.path, "rev-parse", "HEAD") == sha
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 2


async def test_a_worktree_whose_registration_was_deleted_is_rebuilt(
    worktrees: GitWorktrees, repo: Path
) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, repo)
    sha = await worktrees.commit(binding.path, "checkpoint")
    shutil.rmtree(repo / ".git" / "worktrees" / str(session_id))

    assert await worktrees.prepare(session_id, repo) == binding
    assert git(binding.path, "rev-parse", "HEAD") == sha
    assert git(binding.path, "symbolic-ref", "--short", "HEAD") == binding.branch


async def test_a_vanished_fresh_repository_cannot_be_rebuilt(worktrees: GitWorktrees) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, None)
    shutil.rmtree(binding.path)
    with pytest.raises(WorkspaceGone, match="is gone"):
        await worktrees.prepare(session_id, None)


async def test_an_interrupted_prepare_is_finished_on_the_branch_it_created(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path
) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, repo)
    # As if the process died after `git worktree add` but before recording the binding.
    record = tmp_path / "home" / "worktrees" / f"{session_id}.json"
    record.write_text(record.read_text().replace('"complete": true', '"complete": false'))
    (binding.path / "half.txt").write_text("left by the interrupted attempt\n")

    again = await GitWorktrees(tmp_path / "home").prepare(session_id, repo)
    assert again == binding
    assert not (binding.path / "half.txt").exists()
    assert git(repo, "branch", "--list", "orchestrator/*").count("orchestrator/") == 1


async def test_an_existing_branch_of_that_name_is_never_reused(
    worktrees: GitWorktrees, repo: Path
) -> None:
    session_id = uuid4()
    git(repo, "branch", branch_name(session_id), "HEAD~1")
    taken = git(repo, "rev-parse", branch_name(session_id))
    binding = await worktrees.prepare(session_id, repo)
    assert binding.branch == f"orchestrator/{session_id.hex}"
    assert git(repo, "rev-parse", branch_name(session_id)) == taken


async def test_fork_starts_a_new_session_from_a_checkpoint(
    worktrees: GitWorktrees, repo: Path
) -> None:
    old_id, new_id = uuid4(), uuid4()
    old = await worktrees.prepare(old_id, repo)
    (old.path / "step1.txt").write_text("1\n")
    checkpoint = await worktrees.commit(old.path, "step 1")
    (old.path / "step2.txt").write_text("2\n")
    await worktrees.commit(old.path, "step 2")
    (old.path / "uncommitted.txt").write_text("lost\n")

    new = await worktrees.fork(old.path, checkpoint, new_id, old.source)
    assert new.branch == branch_name(new_id)
    assert new.base_commit == checkpoint
    assert new.source == repo
    assert git(new.path, "rev-parse", "HEAD") == checkpoint
    assert sorted(files(new.path)) == [".gitignore", "README.md", "src/app.py", "step1.txt"]
    assert await worktrees.fork(old.path, checkpoint, new_id, old.source) == new

    await worktrees.remove(old_id)
    (new.path / "step2.txt").write_text("redone\n")
    sha = await worktrees.commit(new.path, "step 2 again")
    assert git(repo, "rev-parse", f"refs/heads/{new.branch}") == sha
    assert git(repo, "rev-parse", f"refs/heads/{old.branch}") != sha


async def test_fork_of_a_fresh_repository_is_a_clone_that_outlives_the_old_tree(
    worktrees: GitWorktrees, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("a\n")
    old_id, new_id = uuid4(), uuid4()
    old = await worktrees.prepare(old_id, plain)
    (old.path / "b.txt").write_text("b\n")
    checkpoint = await worktrees.commit(old.path, "b")
    # A commit the old session's branch no longer points at is still there to fork from.
    await worktrees.restore(old.path, old.base_commit)

    new = await worktrees.fork(old.path, checkpoint, new_id, None)
    assert new == Binding(new.path, branch_name(new_id), checkpoint, None)
    assert files(new.path) == {"a.txt": b"a\n", "b.txt": b"b\n"}
    assert git(new.path, "remote") == ""
    assert git(new.path, "branch", "--format=%(refname:short)") == new.branch

    await worktrees.remove(old_id)
    (new.path / "c.txt").write_text("c\n")
    await worktrees.commit(new.path, "c")
    await worktrees.restore(new.path, checkpoint)
    assert files(new.path) == {"a.txt": b"a\n", "b.txt": b"b\n"}


async def test_fork_from_a_tree_or_repository_that_is_gone_says_so(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path
) -> None:
    old_id = uuid4()
    old = await worktrees.prepare(old_id, None)
    await worktrees.remove(old_id)
    with pytest.raises(WorkspaceGone, match="to fork from is gone"):
        await worktrees.fork(old.path, old.base_commit, uuid4(), None)
    linked = await worktrees.prepare(uuid4(), repo)
    shutil.rmtree(repo)
    with pytest.raises(WorkspaceGone, match=f"the repository {repo} to fork from is gone"):
        await worktrees.fork(linked.path, linked.base_commit, uuid4(), linked.source)


async def test_binding_reads_the_record_without_making_anything(
    worktrees: GitWorktrees, repo: Path
) -> None:
    session_id = uuid4()
    assert await worktrees.binding(session_id) is None
    binding = await worktrees.prepare(session_id, repo)
    assert await worktrees.binding(session_id) == binding
    await worktrees.remove(session_id)
    assert await worktrees.binding(session_id) is None
    assert not binding.path.exists()


async def test_fork_from_an_unknown_commit_is_refused(worktrees: GitWorktrees, repo: Path) -> None:
    old = await worktrees.prepare(uuid4(), repo)
    with pytest.raises(WorkspaceError, match="is not in the repository"):
        await worktrees.fork(old.path, "0" * 40, uuid4(), old.source)
    with pytest.raises(WorkspaceError, match="is not a commit id"):
        await worktrees.fork(old.path, "--upload-pack=evil", uuid4(), old.source)


@pytest.mark.parametrize("kind", ["missing", "file"])
async def test_a_missing_workspace_is_a_clear_error(
    worktrees: GitWorktrees, tmp_path: Path, kind: str
) -> None:
    workspace = tmp_path / "nowhere"
    if kind == "file":
        workspace.write_text("not a directory")
    expected = "does not exist" if kind == "missing" else "is not a directory"
    with pytest.raises(WorkspaceError, match=f"workspace {workspace} {expected}"):
        await worktrees.prepare(uuid4(), workspace)
    assert not (tmp_path / "home" / "worktrees").exists() or not any(
        (tmp_path / "home" / "worktrees").iterdir()
    )


async def test_a_bare_repository_is_refused(worktrees: GitWorktrees, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    with pytest.raises(WorkspaceError, match="bare repository"):
        await worktrees.prepare(uuid4(), bare)


async def test_concurrent_prepares_on_one_repository_all_succeed(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path
) -> None:
    ids = [uuid4() for _ in range(6)]
    other = GitWorktrees(tmp_path / "other-home")  # another replica, with locks of its own
    bindings = await asyncio.gather(
        *(worktrees.prepare(i, repo) for i in ids[:3]),
        *(other.prepare(i, repo) for i in ids[3:]),
    )
    assert len({b.path for b in bindings}) == 6
    for binding in bindings:
        assert (binding.path / "src" / "app.py").read_text() == "print('v2')\n"
    listed = git(repo, "worktree", "list", "--porcelain")
    assert listed.count("worktree ") == 7
    shas = await asyncio.gather(
        *(
            (worktrees if n < 3 else other).commit(b.path, f"session {n}")
            for n, b in enumerate(bindings)
        )
    )
    assert len(set(shas)) == 6


async def test_a_workspace_inside_the_home_is_refused(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    with pytest.raises(WorkspaceError, match="inside the orchestrator's home"):
        await worktrees.prepare(uuid4(), binding.path)


async def test_remove_is_idempotent_and_keeps_the_branch(
    worktrees: GitWorktrees, repo: Path
) -> None:
    session_id = uuid4()
    binding = await worktrees.prepare(session_id, repo)
    (binding.path / "readonly").mkdir()
    (binding.path / "readonly" / "f.txt").write_text("f\n")
    (binding.path / "readonly").chmod(0o500)
    await worktrees.remove(session_id)
    await worktrees.remove(session_id)
    await worktrees.remove(UUID(int=7))
    assert not binding.path.exists()
    assert git(repo, "rev-parse", f"refs/heads/{binding.branch}") == binding.base_commit
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
