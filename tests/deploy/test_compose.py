"""The container stack: ``Dockerfile``, ``docker-compose.yml`` and ``.env.example``.

No Docker daemon is needed: ``docker-compose config`` renders the stack as Compose would
run it (without a .env, as right after cloning, and with .env.example as .env), the
Dockerfile is read as text, and the settings model reads the env file; the image's
start-up steps themselves are tested in tests/cli/test_container.py. Under CI=true a
missing ``docker-compose`` fails instead of skipping (``make test`` installs it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml  # type: ignore[import-untyped]

from industrial_orchestrator.cli.container import (
    _kept_for_serving,
    drop_empty_settings,
    keep_secrets,
)
from industrial_orchestrator.cli.server_commands import (
    refuse_open_registration,
    refuse_unsafe_public_bind,
)
from industrial_orchestrator.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
IN_CI = os.environ.get("CI", "").lower() == "true"
SETTINGS = {name.upper() for name in Settings.model_fields}

# Names in .env.example that the settings model does not read.
NOT_SETTINGS = {
    # The model provider's keys: OpenCode reads them from its environment, which
    # docker-compose fills from the env file (docs/opencode.md).
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
}
# Secrets docker-compose generates on its first start: commented out in .env.example.
GENERATED = {"DB_PASSWORD", "SECRET_KEY", "AGENT_REGISTRATION_TOKEN"}
# Settings whose value in .env.example is deliberately not the model's default.
NOT_DEFAULTS = {
    # Secrets: placeholders the operator must change.
    "OPENCODE_PASSWORD",
    # `serve` refuses a non-loopback bind (the container's) while it is '*'.
    "ALLOWED_HOSTS",
}
SECRETS = NOT_DEFAULTS - {"ALLOWED_HOSTS"}


# --- .env.example ---


@dataclass(frozen=True)
class Variable:
    name: str
    value: str
    commented: bool
    line_above: str


_ASSIGNMENT = re.compile(r"^(?P<hash>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def env_example() -> list[Variable]:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if match:
            found.append(
                Variable(
                    name=match["name"],
                    value=match["value"],
                    commented=match["hash"] is not None,
                    line_above=lines[number - 1] if number else "",
                )
            )
    return found


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting comes from this process's environment (it would win over the file)."""
    for key in list(os.environ):
        if key.upper() in SETTINGS:
            monkeypatch.delenv(key)
    return monkeypatch


def test_env_example_names_every_setting() -> None:
    named = {variable.name for variable in env_example()}
    assert SETTINGS - named == set(), "settings missing from .env.example"


def test_env_example_names_no_unknown_variable() -> None:
    named = {variable.name for variable in env_example()}
    assert named - SETTINGS - NOT_SETTINGS == set(), "unknown to the settings model"
    # The allow-list names what is really there, and nothing the model reads.
    assert named >= NOT_SETTINGS
    assert not NOT_SETTINGS & SETTINGS


def test_env_example_names_each_variable_once_with_a_comment() -> None:
    variables = [variable for variable in env_example() if variable.name in SETTINGS]
    names = [variable.name for variable in variables]
    assert sorted(names) == sorted(set(names)), "a variable appears twice"
    for variable in variables:
        above = variable.line_above
        assert above.startswith("#"), f"{variable.name} has no comment line above it"
        assert not _ASSIGNMENT.match(above), f"{variable.name} has no comment line above it"
        assert len(above.lstrip("# ").strip()) > 3, f"{variable.name}'s comment is empty"


def test_env_example_loads_with_defaults_or_placeholders(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(_env_file=ENV_EXAMPLE)
    active = {v.name.lower() for v in env_example() if not v.commented and v.name in SETTINGS}
    # Every line that is not commented out is read; the commented ones stay unset.
    assert settings.model_fields_set == active
    for name, field in Settings.model_fields.items():
        if name.upper() in NOT_DEFAULTS | GENERATED:
            continue
        assert field.default_factory is None
        assert getattr(settings, name) == field.default, f"{name.upper()} is not the default"
    commented = {v.name for v in env_example() if v.commented and v.name in SETTINGS}
    assert commented >= GENERATED
    for name in commented - GENERATED:
        assert Settings.model_fields[name.lower()].default is None, f"{name} has a default"


def test_env_example_secrets_are_placeholders_serve_refuses_on_a_public_bind(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    values = {v.name: v.value for v in env_example()}
    for name in SECRETS | GENERATED:
        assert values[name].startswith("change-me-"), f"{name} is not a change-me placeholder"
    # Uncommented as they are, the placeholders keep a server others can reach from
    # starting...
    for name in GENERATED:
        clean_environment.setenv(name, values[name])
    settings = load_settings(_env_file=ENV_EXAMPLE)
    assert settings.secret_key.get_secret_value() == values["SECRET_KEY"]
    for refuse in (refuse_open_registration, refuse_unsafe_public_bind):
        with pytest.raises(typer.Exit):
            refuse(settings, "0.0.0.0")
    said = capsys.readouterr().err
    assert "AGENT_REGISTRATION_TOKEN" in said
    assert "SECRET_KEY is still the change-me placeholder" in said
    # ...and once they are replaced, nothing else in .env.example does.
    clean_environment.setenv("SECRET_KEY", "s" * 48)
    clean_environment.setenv("AGENT_REGISTRATION_TOKEN", "r" * 48)
    replaced = load_settings(_env_file=ENV_EXAMPLE)
    try:
        refuse_open_registration(replaced, "0.0.0.0")
        refuse_unsafe_public_bind(replaced, "0.0.0.0")
    except typer.Exit:
        pytest.fail("`orchestrator serve --host 0.0.0.0` would refuse .env.example")


# --- Dockerfile ---


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuation lines joined), one list per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for found, rest in stage if found == keyword]


def assignments(stage: list[tuple[str, str]], keyword: str) -> dict[str, str]:
    """The NAME=value pairs of a stage's ENV (or ARG) instructions."""
    pairs: dict[str, str] = {}
    for rest in instructions(stage, keyword):
        for word in shlex.split(rest):
            name, _, value = word.partition("=")
            pairs[name] = value
    return pairs


def makefile_opencode_version() -> str:
    found = re.search(r"^OPENCODE_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile names no OPENCODE_VERSION"
    return found[1]


def test_the_image_is_slim_python_run_by_a_user_who_is_not_root() -> None:
    final = dockerfile_stages()[-1]
    assert instructions(final, "FROM") == ["python:3.11-slim"]
    [user] = instructions(final, "USER")
    assert user.split(":")[0] not in ("root", "0"), user
    assert instructions(final, "EXPOSE") == ["8000"]
    assert json.loads(instructions(final, "CMD")[-1]) == [
        "orchestrator",
        "container",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert any(run.startswith("pip install") for run in instructions(final, "RUN"))


def test_the_healthcheck_asks_ready_with_code_that_compiles() -> None:
    [check] = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    command = json.loads(check[check.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"], command
    compile(command[2], "<healthcheck>", "exec")
    assert "http://127.0.0.1:8000/ready" in command[2]


def test_the_image_carries_the_makefile_s_opencode() -> None:
    stages = dockerfile_stages()
    [builder] = [stage for stage in stages if "AS opencode" in instructions(stage, "FROM")[0]]
    version = assignments(builder, "ARG")["OPENCODE_VERSION"]
    assert version == makefile_opencode_version()
    [install] = [run for run in instructions(builder, "RUN") if "npm install" in run]
    assert "--ignore-scripts" in install
    assert "opencode-linux-x64@${OPENCODE_VERSION}" in install
    final = stages[-1]
    [copied] = [c for c in instructions(final, "COPY") if c.startswith("--from=opencode")]
    assert copied.split()[-1] == assignments(final, "ENV")["OPENCODE_BIN"]


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".env", ".venv", ".git", ".opencode", ".orchestrator", "docs/screenshots"} <= ignored


# --- docker-compose.yml ---


@functools.cache
def rendered(env_file: str | None = None) -> dict[str, Any]:
    """The stack as docker-compose would run it: by default with no .env (right after
    cloning); else with ``env_file`` (relative to the repository) as .env."""
    compose = shutil.which("docker-compose")
    if compose is None:
        message = "docker-compose is missing: `make test` installs it (make system-packages)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    env = {key: value for key, value in os.environ.items() if key.upper() not in SETTINGS}
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        done = subprocess.run(
            [compose, "-f", "docker-compose.yml", "--env-file", env_file or empty.name, "config"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def service(name: str, env_file: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = rendered(env_file)["services"][name]
    return found


def environment_of(name: str, env_file: str | None = None) -> dict[str, str]:
    environment = service(name, env_file).get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: str(value) for key, value in environment.items()}


def named_volume_at(name: str, target: str) -> None:
    mounts = [
        (volume["source"], volume["target"])
        if isinstance(volume, dict)
        else tuple(volume.split(":")[:2])
        for volume in service(name).get("volumes", [])
    ]
    sources = [source for source, mounted in mounts if mounted == target]
    assert sources, f"nothing of {name} is mounted at {target}"
    assert sources[0] in rendered()["volumes"], f"{target} is not a named volume"


def test_compose_runs_the_orchestrator_on_postgres_15_and_redis_7() -> None:
    assert set(rendered()["services"]) == {"secrets", "orchestrator", "postgres", "redis"}
    assert "build" in service("orchestrator")
    assert service("secrets")["image"] == service("orchestrator")["image"]
    assert service("postgres")["image"] == "postgres:15"
    assert service("redis")["image"] == "redis:7"


def test_compose_publishes_the_api_on_8000_and_the_dashboard_on_3000() -> None:
    published = set()
    for port in service("orchestrator")["ports"]:
        if isinstance(port, dict):
            published.add((int(port["published"]), int(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            published.add((int(host), int(container)))
    assert published == {(8000, 8000), (3000, 8000)}


def test_compose_starts_the_orchestrator_once_its_services_are_healthy() -> None:
    depends = service("orchestrator")["depends_on"]
    assert {name: depends[name]["condition"] for name in depends} == {
        "secrets": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    # PostgreSQL is created with the password the secrets service hands it.
    assert service("postgres")["depends_on"] == {
        "secrets": {"condition": "service_completed_successfully"}
    }
    assert "pg_isready" in " ".join(service("postgres")["healthcheck"]["test"])
    assert service("redis")["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    named_volume_at("postgres", "/var/lib/postgresql/data")


def mounted(name: str) -> dict[str, tuple[str, bool]]:
    """Where each named volume is mounted in the service: target and whether read-only."""
    found = {}
    for volume in service(name).get("volumes", []):
        if isinstance(volume, dict):
            found[volume["source"]] = (volume["target"], bool(volume.get("read_only")))
        else:
            source, target, *mode = volume.split(":")
            found[source] = (target, mode == ["ro"])
    return found


def test_compose_points_the_orchestrator_at_its_services_and_volumes() -> None:
    orchestrator, postgres = environment_of("orchestrator"), environment_of("postgres")
    assert orchestrator["DB_HOST"] == "postgres"
    assert orchestrator["REDIS_HOST"] == "redis"
    assert "DATABASE_URL" not in orchestrator  # it would override DB_HOST
    assert (orchestrator["DB_NAME"], orchestrator["DB_USER"]) == (
        postgres["POSTGRES_DB"],
        postgres["POSTGRES_USER"],
    )
    named_volume_at("orchestrator", orchestrator["ORCHESTRATOR_HOME"])
    named_volume_at("orchestrator", orchestrator["WORKSPACE_ROOTS"])


def test_the_secrets_service_keeps_them_where_the_orchestrator_and_postgres_read_them() -> None:
    secrets, orchestrator = service("secrets"), environment_of("orchestrator")
    home = environment_of("secrets")["ORCHESTRATOR_HOME"]
    assert home == orchestrator["ORCHESTRATOR_HOME"]
    [(volume, _)] = [
        (source, target)
        for source, (target, _) in mounted("orchestrator").items()
        if target == orchestrator["ORCHESTRATOR_HOME"]
    ]
    assert mounted("secrets")[volume] == (home, False)
    # PostgreSQL's password file: written by the secrets service into a volume that
    # PostgreSQL mounts read-only, at the path POSTGRES_PASSWORD_FILE names.
    command = secrets["command"]
    assert command[:3] == ["orchestrator", "container", "secrets"]
    written = Path(command[command.index("--postgres-password-file") + 1])
    [shared] = [s for s, (target, _) in mounted("secrets").items() if target == str(written.parent)]
    read = Path(environment_of("postgres")["POSTGRES_PASSWORD_FILE"])
    assert mounted("postgres")[shared] == (str(read.parent), True)
    assert read.name == written.name
    assert "POSTGRES_PASSWORD" not in environment_of("postgres")
    assert shared not in mounted("orchestrator"), "the orchestrator reads its own copy"


def test_every_setting_reaches_the_orchestrator_from_dot_env() -> None:
    fixed = {"DATABASE_URL", "OPENCODE_BIN"}  # the stack's database; the image's binary
    passed = environment_of("orchestrator")
    missing = SETTINGS - fixed - set(passed)
    assert not missing, f"docker-compose.yml's x-settings lacks {sorted(missing)}"
    # Without a .env they are empty (unset for `orchestrator container`)...
    assert passed["SECRET_KEY"] == passed["LOG_LEVEL"] == ""
    # ...with one, its values win, secrets included.
    given = environment_of("orchestrator", ".env.example")
    assert given["LOG_LEVEL"] == "INFO"
    assert given["OPENCODE_PASSWORD"].startswith("change-me-")
    for name in NOT_SETTINGS:
        assert name in passed


def test_container_settings_are_valid_and_serve_accepts_them(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Right after cloning: no .env; the secrets made as the image's start-up steps make
    # them (in a temporary directory standing for the data volume).
    image = assignments(dockerfile_stages()[-1], "ENV")
    environ = {**image, **environment_of("orchestrator")}
    environ["ORCHESTRATOR_HOME"] = str(tmp_path / "orchestrator-data")
    drop_empty_settings(environ)
    keep_secrets(dict(environ))
    environ.update(_kept_for_serving(environ))
    for key, value in environ.items():
        clean_environment.setenv(key, value)
    settings = load_settings(_env_file=None)
    assert settings.database.get_backend_name() == "postgresql"
    assert settings.database.host == "postgres"
    assert settings.redis_host == "redis"
    assert settings.opencode_bin == Path(image["OPENCODE_BIN"])
    try:
        refuse_open_registration(settings, "0.0.0.0")
        refuse_unsafe_public_bind(settings, "0.0.0.0")
    except typer.Exit:
        pytest.fail("`orchestrator serve --host 0.0.0.0` would refuse the container's settings")
