"""Artifacts written into a workspace stay in it, whatever symlinks were planted there."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import ArtifactPathRefused, InvalidInput
from industrial_orchestrator.domain.tasks.artifacts import validate_artifact_path
from industrial_orchestrator.workspaces.files import check_confined, write_confined

SECRET = b"outside, must not change\n"


@dataclass(frozen=True)
class Workspace:
    root: Path
    outside_dir: Path
    outside_file: Path

    def assert_outside_untouched(self) -> None:
        assert os.listdir(self.outside_dir) == []
        assert self.outside_file.read_bytes() == SECRET
        assert self.outside_file.is_file()
        assert not self.outside_file.is_symlink()

    def assert_files_inside(self) -> None:
        real_root = os.path.realpath(self.root)
        for directory, _dirs, files in os.walk(self.root, followlinks=False):
            for name in files:
                path = os.path.join(directory, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    real = os.path.realpath(path)
                    assert os.path.commonpath([real_root, real]) == real_root, path


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "workspace"
    outside_dir = tmp_path / "outside"
    outside_file = tmp_path / "secret.txt"
    root.mkdir()
    outside_dir.mkdir()
    outside_file.write_bytes(SECRET)
    (root / "escape").symlink_to(outside_dir, target_is_directory=True)
    (root / "link.txt").symlink_to(outside_file)
    (root / "regular.txt").write_bytes(b"regular\n")
    return Workspace(root, outside_dir, outside_file)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("escape/owned.txt", "'escape' escapes the workspace through a symlink"),
        ("escape/deep/er/owned.txt", "'escape' escapes the workspace through a symlink"),
        ("link.txt", "is a symlink"),
        ("link.txt/x", "'link.txt' escapes the workspace through a symlink"),
        ("regular.txt/x", "'regular.txt' is not a directory"),
    ],
)
def test_writes_through_links_and_files_are_refused(
    workspace: Workspace, path: str, reason: str
) -> None:
    relative = PurePosixPath(path)
    with pytest.raises(ArtifactPathRefused) as early:
        check_confined(workspace.root, relative)
    assert reason in early.value.message
    with pytest.raises(ArtifactPathRefused) as late:
        write_confined(workspace.root, relative, b"pwned\n")
    assert reason in late.value.message
    assert late.value.details == {"field": "artifacts.path", "path": path}
    workspace.assert_outside_untouched()
    assert (workspace.root / "regular.txt").read_bytes() == b"regular\n"
    assert os.readlink(workspace.root / "link.txt") == str(workspace.outside_file)


def test_a_dangling_symlink_is_not_followed(workspace: Workspace) -> None:
    (workspace.root / "dangling").symlink_to(workspace.outside_dir / "new")
    for path in ("dangling", "dangling/x.txt"):
        with pytest.raises(ArtifactPathRefused):
            check_confined(workspace.root, PurePosixPath(path))
        with pytest.raises(ArtifactPathRefused):
            write_confined(workspace.root, PurePosixPath(path), b"pwned")
    workspace.assert_outside_untouched()


def test_a_directory_is_not_replaced(workspace: Workspace) -> None:
    (workspace.root / "src").mkdir()
    with pytest.raises(ArtifactPathRefused, match="is a directory"):
        check_confined(workspace.root, PurePosixPath("src"))
    with pytest.raises(ArtifactPathRefused, match="is a directory"):
        write_confined(workspace.root, PurePosixPath("src"), b"x")
    assert (workspace.root / "src").is_dir()


@pytest.mark.parametrize("path", ["../secret.txt", "/etc/passwd", "a/../../secret.txt"])
def test_paths_are_validated_again(workspace: Workspace, path: str) -> None:
    with pytest.raises(ArtifactPathRefused):
        check_confined(workspace.root, PurePosixPath(path))
    with pytest.raises(ArtifactPathRefused):
        write_confined(workspace.root, PurePosixPath(path), b"pwned")
    workspace.assert_outside_untouched()


def test_nested_write_creates_directories(workspace: Workspace) -> None:
    relative = PurePosixPath("src/app/api/main.py")
    check_confined(workspace.root, relative)
    written = write_confined(workspace.root, relative, b"print('hi')\n")
    assert written == workspace.root / "src/app/api/main.py"
    assert written.read_bytes() == b"print('hi')\n"
    assert sorted(os.listdir(workspace.root / "src/app/api")) == ["main.py"]


def test_existing_file_is_overwritten(workspace: Workspace) -> None:
    relative = PurePosixPath("regular.txt")
    check_confined(workspace.root, relative)
    write_confined(workspace.root, relative, b"new content")
    assert (workspace.root / "regular.txt").read_bytes() == b"new content"
    assert sorted(os.listdir(workspace.root)) == ["escape", "link.txt", "regular.txt"]


def test_missing_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "not" / "yet"
    check_confined(root, PurePosixPath("a/b.txt"))
    write_confined(root, PurePosixPath("a/b.txt"), b"")
    assert (root / "a/b.txt").read_bytes() == b""


def test_binary_and_unicode_names(workspace: Workspace) -> None:
    content = bytes(range(256)) * 100
    write_confined(workspace.root, PurePosixPath("données/文档 1.bin"), content)
    assert (workspace.root / "données/文档 1.bin").read_bytes() == content


PIECES = ["a", "b", "..", ".", "/", "\\", "\x00", "escape", "link.txt", "regular.txt", "C:"]
PIECES += ["~", " ", "é"]
paths = st.lists(st.sampled_from(PIECES) | st.text(max_size=8), max_size=8).map("".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=paths)
def test_fuzz_no_write_leaves_the_workspace(workspace: Workspace, path: str) -> None:
    # The workspace is shared by the examples: what one example writes, the next walks.
    content = path.encode("utf-8", "replace")
    try:
        relative = validate_artifact_path(path)
        check_confined(workspace.root, relative)
    except InvalidInput:
        checked = False
    else:
        checked = True
        # What the early check accepts, the write accepts, and the other way round.
        assert write_confined(workspace.root, relative, content) == workspace.root / path
        assert (workspace.root / path).read_bytes() == content
    event("written" if checked else "refused")
    if not checked:
        # Unvalidated, as a careless caller would pass it (PurePosixPath drops "a/"'s slash).
        with contextlib.suppress(InvalidInput):
            write_confined(workspace.root, PurePosixPath(path), content)
    workspace.assert_outside_untouched()
    workspace.assert_files_inside()
    assert (workspace.root / "escape").is_symlink()
    assert (workspace.root / "link.txt").is_symlink()
