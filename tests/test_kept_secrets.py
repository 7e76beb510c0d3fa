"""Secrets kept in files (``kept_secrets``): made once with mode 0600 and never readable
by others, reused at every start, one key however many processes start together, and
never printed or logged by ``serve``."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
import typer

from industrial_orchestrator.cli.server_commands import refuse_unsafe_public_bind
from industrial_orchestrator.config import load_settings
from industrial_orchestrator.kept_secrets import (
    SECRET_KEY_FILE,
    KeptSecretError,
    kept_secret,
    with_kept_secret_key,
)

from .server_process import ServerProcess


def test_the_first_call_makes_a_private_secret_and_every_later_one_reads_it(tmp_path: Path):
    path = tmp_path / "home" / "secret_key"
    previous = os.umask(0o022)  # a permissive umask must not widen the file's mode
    try:
        made = kept_secret(path)
    finally:
        os.umask(previous)
    assert len(made) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kept_secret(path, make=lambda: "x" * 48) == made
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"], "no draft left behind"


def _race(path: str, start: multiprocessing.synchronize.Event, out: multiprocessing.Queue[str]):
    start.wait()
    out.put(kept_secret(Path(path)))


def test_processes_starting_together_end_with_one_secret(tmp_path: Path):
    path = tmp_path / "secret_key"
    context = multiprocessing.get_context("fork")
    start = context.Event()
    out: multiprocessing.Queue[str] = context.Queue()
    racers = [context.Process(target=_race, args=(str(path), start, out)) for _ in range(8)]
    for racer in racers:
        racer.start()
    start.set()
    found = {out.get(timeout=30) for _ in racers}
    for racer in racers:
        racer.join(30)
        assert racer.exitcode == 0
    assert found == {path.read_text().strip()}


def test_a_secret_others_can_read_is_refused_not_used(tmp_path: Path):
    path = tmp_path / "secret_key"
    path.write_text("s" * 48)
    path.chmod(0o644)
    with pytest.raises(KeptSecretError, match="chmod 600"):
        kept_secret(path)


@pytest.mark.parametrize("content", ["", "short\n"])
def test_a_damaged_secret_is_refused_not_replaced(tmp_path: Path, content: str):
    path = tmp_path / "secret_key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeptSecretError, match="delete it"):
        kept_secret(path)
    assert path.read_text() == content


def test_a_symlink_in_place_of_the_secret_is_not_followed(tmp_path: Path):
    target = tmp_path / "elsewhere"
    target.write_text("t" * 48)
    target.chmod(0o600)
    (tmp_path / "secret_key").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links"):
        kept_secret(tmp_path / "secret_key")


def test_settings_sign_with_secret_key_when_set_else_with_the_kept_one(tmp_path: Path):
    home = tmp_path / "home"
    unset = load_settings(_env_file=None, orchestrator_home=home)
    first = with_kept_secret_key(unset).secret_key.get_secret_value()
    assert first == (home / SECRET_KEY_FILE).read_text().strip()
    again = load_settings(_env_file=None, orchestrator_home=home)
    assert with_kept_secret_key(again).secret_key.get_secret_value() == first
    assert first != unset.secret_key.get_secret_value()

    explicit = load_settings(_env_file=None, orchestrator_home=tmp_path / "b", secret_key="e" * 40)
    assert with_kept_secret_key(explicit).secret_key.get_secret_value() == "e" * 40
    assert not (tmp_path / "b").exists(), "a set SECRET_KEY leaves nothing on disk"


def test_a_public_bind_needs_secret_key_set_only_on_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # One SQLite process signs with its kept key; replicas of a PostgreSQL database on
    # other machines would each keep their own.
    sqlite = load_settings(_env_file=None, orchestrator_home=tmp_path)
    refuse_unsafe_public_bind(sqlite, "0.0.0.0")
    postgresql = load_settings(_env_file=None, orchestrator_home=tmp_path, db_host="db")
    with pytest.raises(typer.Exit):
        refuse_unsafe_public_bind(postgresql, "0.0.0.0")
    assert "SECRET_KEY is not set" in capsys.readouterr().err
    refuse_unsafe_public_bind(
        postgresql.model_copy(update={"secret_key": sqlite.secret_key}), "0.0.0.0"
    )
    assert not list(tmp_path.iterdir()), "a check makes no key"


@pytest.mark.slow
def test_serve_keeps_its_key_across_restarts_and_never_prints_it(tmp_path: Path):
    home = tmp_path / "home"
    with ServerProcess(
        {"ORCHESTRATOR_HOME": str(home), "LOG_LEVEL": "DEBUG"}, tmp_path / "server"
    ) as server:
        server.start()
        key = (home / SECRET_KEY_FILE).read_text().strip()
        assert stat.S_IMODE((home / SECRET_KEY_FILE).stat().st_mode) == 0o600
        with server.client() as http:  # some traffic, so that request logging runs too
            assert http.get("/api/v1/agents").status_code == 200
        server.restart(graceful=False)
        assert (home / SECRET_KEY_FILE).read_text().strip() == key
        for run in server.runs:
            assert key not in run.stdout + run.stderr
