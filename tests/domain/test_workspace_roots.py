"""Workspace paths are confined to the configured roots, case by case and by property."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.workspace_roots import (
    MAX_WORKSPACE_CHARS,
    InvalidWorkspace,
    branch_name,
    confine_workspace,
)

ROOTS = [Path("/srv/repos"), Path("/home/op/work")]

ACCEPTED = [
    ("/srv/repos", "/srv/repos"),
    ("/srv/repos/", "/srv/repos"),
    ("/srv/repos/api", "/srv/repos/api"),
    ("/srv/repos/api/", "/srv/repos/api"),
    ("/srv//repos///api", "/srv/repos/api"),
    ("//srv/repos/api", "/srv/repos/api"),
    ("/srv/./repos/./api/.", "/srv/repos/api"),
    ("/home/op/work/a b/données", "/home/op/work/a b/données"),
    ("/srv/repos/...", "/srv/repos/..."),
    ("/srv/repos/..api", "/srv/repos/..api"),
]

REFUSED = [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("srv/repos/api", "it is not absolute"),
    ("./srv/repos", "it is not absolute"),
    ("~/work", "it is not absolute"),
    ("C:/srv/repos", "it is not absolute"),
    ("/srv/repos/\x00api", "NUL character at position 11"),
    ("/srv/repos/a\nb", "control character '\\n'"),
    ("/srv/repos/\x7f", "control character '\\x7f'"),
    ("/srv/repos/\ud800", "lone surrogate"),
    ("/srv/repos/..", "'..' component"),
    ("/srv/repos/../etc", "'..' component"),
    ("/srv/repos/api/../../../etc/passwd", "'..' component"),
    ("/srv/repos/api/..", "'..' component"),
    ("/srv/repos/api/../web", "'..' component"),
    ("/", "not inside an allowed workspace root"),
    ("/srv", "not inside an allowed workspace root"),
    ("/srv/repo", "not inside an allowed workspace root"),
    ("/srv/repos-evil", "not inside an allowed workspace root"),
    ("/srv/reposx/api", "not inside an allowed workspace root"),
    ("/etc", "not inside an allowed workspace root"),
    ("/home/op", "not inside an allowed workspace root"),
    ("/" + "a" * MAX_WORKSPACE_CHARS, f"the limit is {MAX_WORKSPACE_CHARS}"),
]


@pytest.mark.parametrize(("path", "expected"), ACCEPTED)
def test_paths_inside_a_root_come_back_normalised(path: str, expected: str) -> None:
    confined = confine_workspace(path, ROOTS)
    assert confined == PurePosixPath(expected)
    assert str(confined) == expected


@pytest.mark.parametrize(("path", "reason"), REFUSED)
def test_refused_paths_say_what_is_wrong_and_list_the_roots(path: str, reason: str) -> None:
    with pytest.raises(InvalidWorkspace) as raised:
        confine_workspace(path, ROOTS)
    error = raised.value
    assert reason in error.message
    assert "allowed roots: '/srv/repos', '/home/op/work'" in error.message
    assert error.details["field"] == "workspace"
    assert error.details["allowed_roots"] == ["/srv/repos", "/home/op/work"]
    assert error.code == "invalid_workspace"


def test_a_refusal_is_a_validation_error() -> None:
    # InvalidInput is what the API answers with 422.
    assert issubclass(InvalidWorkspace, InvalidInput)


def test_a_long_refused_path_is_not_echoed_whole() -> None:
    path = "/etc/" + "x" * 10_000
    with pytest.raises(InvalidWorkspace) as raised:
        confine_workspace(path, ROOTS)
    assert len(raised.value.message) < 400
    assert raised.value.details["workspace"].endswith("…")


def test_with_no_roots_nothing_is_allowed() -> None:
    with pytest.raises(InvalidWorkspace, match="allowed roots: none are configured"):
        confine_workspace("/srv/repos", [])


def test_the_filesystem_root_as_a_root_allows_any_absolute_path() -> None:
    assert confine_workspace("/any/where", [Path("/")]) == PurePosixPath("/any/where")
    assert confine_workspace("/", [Path("/")]) == PurePosixPath("/")


def test_a_root_given_with_a_trailing_slash_or_double_slash_still_matches() -> None:
    assert confine_workspace("/srv/repos/a", [Path("//srv/repos/")]) == PurePosixPath(
        "/srv/repos/a"
    )


@pytest.mark.parametrize("root", ["relative/root", "/srv/../etc"])
def test_a_root_that_is_not_absolute_and_resolved_is_a_programming_error(root: str) -> None:
    with pytest.raises(ValueError, match="must be absolute and resolved"):
        confine_workspace("/srv/repos", [Path(root)])


@pytest.mark.parametrize(
    ("session_id", "branch"),
    [
        (UUID("0123abcd-4567-89ef-0123-456789abcdef"), "orchestrator/0123abcd"),
        (UUID(int=0), "orchestrator/00000000"),
        (UUID(int=(1 << 128) - 1), "orchestrator/ffffffff"),
    ],
)
def test_branch_name_is_the_first_eight_hex_digits(session_id: UUID, branch: str) -> None:
    assert branch_name(session_id) == branch


# Properties.

ROOT_CHOICES = [Path("/srv/repos"), Path("/home/op/work"), Path("/srv/repos/nested"), Path("/")]
PIECES = ["a", "b", "..", ".", "", "/", "srv", "repos", "home", "op", "work", "\x00", "é", " "]
components = st.sampled_from(PIECES) | st.text(max_size=6)
paths = st.lists(components, max_size=10).map("/".join)
root_sets = st.lists(st.sampled_from(ROOT_CHOICES), max_size=3, unique=True)
safe_components = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"), min_size=1
).filter(lambda part: part not in (".", ".."))


@given(path=paths | paths.map(lambda p: "/" + p), roots=root_sets)
def test_nothing_returned_is_outside_the_roots(path: str, roots: list[Path]) -> None:
    try:
        confined = confine_workspace(path, roots)
    except InvalidWorkspace:
        return
    assert confined.is_absolute()
    assert ".." not in confined.parts
    assert "." not in confined.parts
    assert "\x00" not in str(confined)
    assert any(confined.is_relative_to(root) for root in roots)
    # Normalised: giving the result back returns it unchanged.
    assert confine_workspace(str(confined), roots) == confined


@given(root=st.sampled_from(ROOT_CHOICES), parts=st.lists(safe_components, max_size=5))
def test_every_plain_path_under_a_root_is_accepted_as_is(root: Path, parts: list[str]) -> None:
    path = PurePosixPath(root, *parts)
    assert confine_workspace(str(path), [root]) == path


@given(
    root=st.sampled_from(ROOT_CHOICES),
    before=st.lists(safe_components, max_size=3),
    after=st.lists(safe_components, max_size=3),
)
def test_any_dot_dot_component_is_refused(root: Path, before: list[str], after: list[str]) -> None:
    path = "/".join([str(root).rstrip("/"), *before, "..", *after])
    with pytest.raises(InvalidWorkspace, match=r"'\.\.' component"):
        confine_workspace(path, [root])


@given(session_id=st.uuids())
def test_branch_names_are_valid_and_stable(session_id: UUID) -> None:
    branch = branch_name(session_id)
    assert branch == branch_name(UUID(str(session_id)))
    prefix, short = branch.split("/")
    assert prefix == "orchestrator"
    assert len(short) == 8
    assert set(short) <= set("0123456789abcdef")
    assert session_id.hex.startswith(short)
