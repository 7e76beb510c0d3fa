"""Sessions work in git working trees of their own, against real git in a temporary directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.workspace_roots import branch_name
from industrial_orchestrator.storage.git_worktrees import (
    AUTHOR_EMAIL,
    AUTHOR_NAME,
    Binding,
    GitWorktrees,
    WorkspaceError,
    WorkspaceGone,
)

OPERATOR = ["-c", "user.name=Operator", "-c", "user.email=operator@example.com"]


def git(cwd: Path, *args: str) -> str:
    """Git as the operator runs it, with an identity of their own."""
    result = subprocess.run(
        ["git", *OPERATOR, "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    )
    return result.stdout.strip()


def git_fails(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True).returncode != 0


def files(root: Path) -> dict[str, bytes | str]:
    """Everything under ``root`` but ``.git``: file contents, and link targets as strings."""
    found: dict[str, bytes | str] = {}
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            key = os.path.relpath(path, root)
            if name == ".git" or stat.S_ISFIFO(os.lstat(path).st_mode):
                continue
            found[key] = os.readlink(path) if os.path.islink(path) else Path(path).read_bytes()
    return found


def operator_state(repo: Path) -> tuple[str, str, str, dict[str, bytes | str]]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        files(repo),
    )


@pytest.fixture(autouse=True)
def no_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ~/.gitconfig: the orchestrator must not need one."""
    empty_home = tmp_path / "user-home"
    empty_home.mkdir()
    monkeypatch.setenv("HOME", str(empty_home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)


@pytest.fixture
def worktrees(tmp_path: Path) -> GitWorktrees:
    return GitWorktrees(tmp_path / "home")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An operator's repository: two commits, a local change and an untracked file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print('v1')\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "src" / "app.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "second")
    (repo / "README.md").write_text("hello, uncommitted\n")
    (repo / "notes.txt").write_text("the operator's own untracked file\n")
    return repo


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


async def test_commit_and_restore_round_trip_exactly(worktrees: GitWorktrees, repo: Path) -> None:
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    at_base = files(tree)

    (tree / "README.md").write_text("modified\n")
    (tree / "src" / "app.py").unlink()
    (tree / "docs").mkdir()
    (tree / "docs" / "guide.md").write_text("added\n")
    (tree / "link").symlink_to("docs/guide.md")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    checkpoint = await worktrees.commit(tree, "checkpoint 1")
    at_checkpoint = files(tree)

    # Everything after the checkpoint must go: edits, deletions, untracked and ignored files.
    (tree / "README.md").write_text("modified again\n")
    (tree / "docs" / "guide.md").unlink()
    (tree / "untracked.txt").write_text("u\n")
    (tree / "debug.log").write_text("ignored\n")
    (tree / "build" / "deep").mkdir(parents=True)
    (tree / "build" / "deep" / "out.bin").write_bytes(b"\x00\x01")
    nested = tree / "vendored"
    nested.mkdir()
    git(nested, "init", "-q")

    await worktrees.restore(tree, checkpoint)
    assert files(tree) == at_checkpoint
    assert os.access(tree / "run.sh", os.X_OK)
    assert git(tree, "status", "--porcelain", "--ignored") == ""

    await worktrees.restore(tree, binding.base_commit)
    assert files(tree) == at_base
    await worktrees.restore(tree, checkpoint[:12])
    assert files(tree) == at_checkpoint


async def test_commit_with_nothing_changed_still_records_a_checkpoint(
    worktrees: GitWorktrees,
) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    first = await worktrees.commit(binding.path, "nothing")
    second = await worktrees.commit(binding.path, "")
    assert len({binding.base_commit, first, second}) == 3
    assert git(binding.path, "rev-parse", "HEAD~2") == binding.base_commit


async def test_a_commit_made_with_a_key_is_found_by_it_and_only_by_it(
    worktrees: GitWorktrees,
) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:1") is None
    keyed = await worktrees.commit(
        binding.path, "checkpoint: after task", keys=["checkpoint:s:after-task:1"]
    )
    longer = await worktrees.commit(binding.path, "another", keys=["checkpoint:s:after-task:10"])
    await worktrees.commit(binding.path, "no key; mentions checkpoint:s:after-task:1 inline")
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:1") == keyed
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:10") == longer
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task") is None
    assert git(binding.path, "log", "-1", "--format=%s", keyed) == "checkpoint: after task"
    both = await worktrees.commit(
        binding.path, "two at once", keys=["checkpoint:s:after-task:2", "checkpoint:s:after-task:3"]
    )
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:2") == both
    assert await worktrees.find_commit(binding.path, "checkpoint:s:after-task:3") == both
    with pytest.raises(WorkspaceError):
        await worktrees.commit(binding.path, "x", keys=["one", "two\nlines"])


async def test_a_directory_that_is_not_a_repository_is_copied_not_modified(
    worktrees: GitWorktrees, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    (plain / "src").mkdir(parents=True)
    (plain / "src" / "main.py").write_text("print('hi')\n")
    (plain / "data.bin").write_bytes(bytes(range(256)))
    (plain / "outside-link").symlink_to(tmp_path / "secret")
    (plain / "vendor" / ".git").mkdir(parents=True)
    (plain / "vendor" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (plain / "vendor" / "lib.py").write_text("lib\n")
    os.mkfifo(plain / "pipe")
    before = files(plain)
    mtimes = {p: os.lstat(plain / p).st_mtime_ns for p in before}

    session_id = uuid4()
    binding = await worktrees.prepare(session_id, plain)
    assert binding.source is None
    copied = files(binding.path)
    assert copied == {k: v for k, v in before.items() if not k.startswith("vendor/.git")}
    assert os.readlink(binding.path / "outside-link") == str(tmp_path / "secret")
    assert not (binding.path / "pipe").exists()
    assert git(binding.path, "status", "--porcelain") == ""
    assert git(binding.path, "rev-list", "--count", "HEAD") == "1"
    assert "vendor/lib.py" in git(binding.path, "ls-files")

    (binding.path / "src" / "main.py").write_text("changed\n")
    await worktrees.commit(binding.path, "work")
    await worktrees.remove(session_id)
    assert not binding.path.exists()
    assert files(plain) == before
    assert {p: os.lstat(plain / p).st_mtime_ns for p in before} == mtimes
    assert not (plain / ".git").exists()


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


async def test_diff_and_changed_files_include_untracked_and_uncommitted_work(
    worktrees: GitWorktrees, repo: Path
) -> None:
    binding = await worktrees.prepare(uuid4(), repo)
    tree = binding.path
    (tree / "committed.txt").write_text("committed\n")
    await worktrees.commit(tree, "c")
    (tree / "README.md").write_text("edited, not committed\n")
    (tree / "src" / "app.py").unlink()
    (tree / "brand new.py").write_text("untracked = True\n")
    (tree / "ignored.log").write_text("ignored\n")

    changed = await worktrees.changed_files(tree, binding.base_commit)
    assert changed == ["README.md", "brand new.py", "committed.txt", "src/app.py"]
    diff = await worktrees.diff(tree, binding.base_commit)
    assert "+untracked = True" in diff
    assert "+committed" in diff
    assert "-hello" in diff
    assert "+edited, not committed" in diff
    assert "deleted file mode" in diff
    assert "ignored" not in diff
    assert await worktrees.diff(tree, git(tree, "rev-parse", "HEAD")) != ""
    await worktrees.commit(tree, "all")
    assert await worktrees.diff(tree, "HEAD") == ""
    assert await worktrees.changed_files(tree, "HEAD") == []


async def test_a_large_diff_is_cut_with_a_marker(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    (binding.path / "big.txt").write_text("".join(f"line {i}\n" for i in range(200_000)))
    cut = await worktrees.diff(binding.path, binding.base_commit, max_bytes=10_000)
    body, marker = cut[: cut.rindex("[diff cut")], cut[cut.rindex("[diff cut") :]
    assert len(body.encode()) <= 10_000
    assert body.endswith("\n")
    assert marker == "[diff cut: it is longer than 10000 bytes; the rest is not shown]\n"
    whole = await worktrees.diff(binding.path, binding.base_commit, max_bytes=10**8)
    assert "[diff cut" not in whole
    assert whole.startswith(body)
    assert "+line 199999\n" in whole
    # The default cap is 1 MiB.
    default = await worktrees.diff(binding.path, binding.base_commit)
    assert len(default.encode()) < (1 << 20) + 200
    assert "[diff cut" in default


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


async def test_a_held_index_lock_is_waited_for(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    lock = binding.path / ".git" / "index.lock"
    lock.write_bytes(b"")
    asyncio.get_running_loop().call_later(0.3, lock.unlink)
    (binding.path / "x.txt").write_text("x\n")
    sha = await worktrees.commit(binding.path, "after the lock")
    assert git(binding.path, "show", f"{sha}:x.txt") == "x"


async def test_an_index_lock_left_by_a_dead_git_is_cleared(tmp_path: Path) -> None:
    worktrees = GitWorktrees(tmp_path / "home", timeout=30)
    binding = await worktrees.prepare(uuid4(), None)
    lock = binding.path / ".git" / "index.lock"
    lock.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    (binding.path / "x.txt").write_text("x\n")
    sha = await worktrees.commit(binding.path, "past the stale lock")
    assert git(binding.path, "show", f"{sha}:x.txt") == "x"


async def test_cancelled_git_calls_never_leave_the_tree_locked(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    for n in range(40):
        (binding.path / "f.txt").write_text(f"{n}\n")
        call = asyncio.ensure_future(worktrees.commit(binding.path, f"commit {n}"))
        await asyncio.sleep(n % 8 * 0.002)
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await call
    (binding.path / "f.txt").write_text("last\n")
    sha = await worktrees.commit(binding.path, "after all the cancelled ones")
    assert git(binding.path, "show", f"{sha}:f.txt") == "last"
    await worktrees.restore(binding.path, binding.base_commit)
    assert files(binding.path) == {}


async def test_only_trees_of_this_orchestrator_are_touched(
    worktrees: GitWorktrees, repo: Path
) -> None:
    before = operator_state(repo)
    binding = await worktrees.prepare(uuid4(), repo)
    for path in (repo, binding.path / "src", binding.path.parent):
        with pytest.raises(WorkspaceError, match="is not a working tree of this orchestrator"):
            await worktrees.restore(path, binding.base_commit)
        with pytest.raises(WorkspaceError, match="is not a working tree of this orchestrator"):
            await worktrees.commit(path, "no")
    assert operator_state(repo) == before


async def test_a_workspace_inside_the_home_is_refused(worktrees: GitWorktrees) -> None:
    binding = await worktrees.prepare(uuid4(), None)
    with pytest.raises(WorkspaceError, match="inside the orchestrator's home"):
        await worktrees.prepare(uuid4(), binding.path)


async def test_a_tree_that_lost_its_git_never_reaches_an_enclosing_repository(
    tmp_path: Path,
) -> None:
    # The default home is ./.orchestrator, often inside the operator's own repository.
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q", "-b", "main")
    (outer / "tracked.txt").write_text("committed\n")
    git(outer, "add", "tracked.txt")
    git(outer, "commit", "-q", "-m", "operator's")
    (outer / "tracked.txt").write_text("an edit the operator has not committed\n")
    (outer / "precious.txt").write_text("untracked, must survive\n")
    worktrees = GitWorktrees(outer / ".orchestrator")
    binding = await worktrees.prepare(uuid4(), None)
    shutil.rmtree(binding.path / ".git")
    with pytest.raises(WorkspaceError):
        await worktrees.restore(binding.path, "HEAD")
    assert (outer / "precious.txt").read_text() == "untracked, must survive\n"
    assert (outer / "tracked.txt").read_text() == "an edit the operator has not committed\n"


async def test_git_errors_carry_gits_message(worktrees: GitWorktrees, repo: Path) -> None:
    git(repo, "branch", "orchestrator")  # refs/heads/orchestrator/<x> cannot exist beside it
    with pytest.raises(WorkspaceError) as raised:
        await worktrees.prepare(uuid4(), repo)
    assert "git worktree failed" in raised.value.message
    assert "refs/heads/orchestrator" in raised.value.message
    assert raised.value.details["stderr"]


async def test_hooks_and_inherited_git_variables_are_ignored(
    worktrees: GitWorktrees, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "post-checkout", "commit-msg"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {tmp_path}/{hook}-ran\nexit 1\n")
        (hooks / hook).chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q")
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Somebody Else")

    binding = await worktrees.prepare(uuid4(), repo)
    (binding.path / "x.txt").write_text("x\n")
    sha = await worktrees.commit(binding.path, "checkpoint")
    monkeypatch.delenv("GIT_DIR")
    assert git(repo, "log", "-1", "--format=%an", sha) == AUTHOR_NAME
    assert not [name for name in os.listdir(tmp_path) if name.endswith("-ran")]


async def test_a_git_call_that_outlives_its_timeout_is_killed(repo: Path, tmp_path: Path) -> None:
    worktrees = GitWorktrees(tmp_path / "home", timeout=1e-6)
    with pytest.raises(WorkspaceError, match="did not finish within"):
        await worktrees.prepare(uuid4(), repo)


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
