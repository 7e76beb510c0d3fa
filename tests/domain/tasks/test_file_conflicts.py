"""Which planned files collide: the same path, or a path under a directory named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from industrial_orchestrator.domain.errors import InvalidInput
from industrial_orchestrator.domain.tasks.file_conflicts import (
    MAX_FILES,
    normalised_path,
    overlap,
    planned_files,
)

names = st.sampled_from(["src", "docs", "app.py", "a", "b.md"])
paths = st.lists(names, min_size=1, max_size=3).map("/".join)


@pytest.mark.parametrize(
    ("ours", "theirs", "shared"),
    [
        (["src/app.py"], ["src/app.py"], ["src/app.py"]),
        (["src/"], ["src/app.py"], ["src/"]),
        (["src/app.py"], ["src/"], ["src/app.py"]),
        (["src/app.py"], ["src/app.pyc", "src/app"], []),
        (["src"], ["src/app.py"], []),  # a file named src, not the directory
        (["docs/", "a.py"], ["b.py"], []),
    ],
)
def test_overlap(ours, theirs, shared):
    assert overlap(ours, theirs) == shared


@given(st.lists(paths, max_size=5), st.lists(paths, max_size=5))
def test_overlap_is_symmetric_in_whether_it_is_empty(ours, theirs):
    assert bool(overlap(ours, theirs)) == bool(overlap(theirs, ours))
    assert set(overlap(ours, theirs)) <= set(ours)


@given(paths.filter(lambda path: "/" in path))
def test_a_directory_covers_everything_under_it(path):
    directory = path.split("/")[0] + "/"
    assert overlap([directory], [path]) == [directory]
    assert overlap([path], [directory]) == [path]


def test_paths_are_normalised_and_refused_outside_the_workspace():
    assert normalised_path("./src//a.py") == "src/a.py"
    assert normalised_path("src/") == "src/"
    for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "a\x00b", "."]:
        with pytest.raises(InvalidInput):
            normalised_path(bad)
    assert planned_files(["b", "a", "./a"]) == ("a", "b")
    with pytest.raises(InvalidInput, match="limit"):
        planned_files([f"f{n}" for n in range(MAX_FILES + 1)])
