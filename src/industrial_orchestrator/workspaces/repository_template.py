"""The template the orchestrator's fresh repositories are made from: the ``config`` libgit2
writes for a repository on this file system, made once per home.

Why: a session without a git workspace gets a fresh repository, and libgit2's init writes
the new repository's config four times, each through a lock file renamed over the last,
besides its own template files (a description, a hooks README, an exclude file). On a
file system that scans recently freed inodes for each new one (ext4 without a journal),
that was most of what starting a session cost (docs/benchmarks.md). From a template that
holds the config, init copies it once and writes nothing else of the kind. The config is
the one libgit2 made for a repository in the same home, after the same probes of the file
system, so a repository made from the template is configured as one made without it.

Blocking: call it from a worker thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pygit2

TEMPLATE_FOLDER = "repository-template"


def repository_template(home: Path) -> Path:
    """``home``'s template for ``pygit2.init_repository(template_path=...)``, made on the
    first call. Several processes may make it at once: the first to move it into place
    wins, the others use that one."""
    template = home / TEMPLATE_FOLDER
    if (template / "config").is_file():
        return template
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=".repository-template-") as scratch:
        seed = Path(scratch) / "seed"
        pygit2.init_repository(str(seed))
        made = Path(scratch) / "template"
        made.mkdir()
        shutil.copyfile(seed / ".git" / "config", made / "config")
        try:
            os.rename(made, template)
        except OSError:
            if not (template / "config").is_file():
                raise
    return template
