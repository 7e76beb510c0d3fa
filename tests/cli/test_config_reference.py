"""``orchestrator config-reference`` and ``docs/configuration.md``: the committed reference
is what the settings model gives now, lists every setting, and never shows a secret."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from industrial_orchestrator.cli.config_reference import COMMAND, render_reference
from industrial_orchestrator.config import Settings

from ..server_process import orchestrator_env, run_cli

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _secret_defaults() -> dict[str, str]:
    """Every secret setting's default value, by field name (a factory's, made once)."""
    found = {}
    for name, info in Settings.model_fields.items():
        default = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]
        if isinstance(default, SecretStr):
            found[name] = default.get_secret_value()
    return found


def test_the_committed_reference_is_what_the_model_gives() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(Settings), (
        f"docs/configuration.md is out of date with Settings in config.py: regenerate it "
        f"with `{COMMAND}`"
    )


def test_every_setting_has_a_row() -> None:
    reference = render_reference(Settings)
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    variables = [row.split("`")[1] for row in rows]
    assert variables == [name.upper() for name in Settings.model_fields]


def test_no_secret_default_is_shown() -> None:
    secrets = _secret_defaults()
    # Not vacuous: the known defaults of config.py are among those checked.
    assert {"db_password", "opencode_password", "secret_key"} <= set(secrets)
    reference = render_reference(Settings)
    for name, value in secrets.items():
        assert value not in reference, f"the default of {name.upper()} is shown"
        row = next(line for line in reference.splitlines() if f"`{name.upper()}`" in line)
        assert "(secret)" in row


class _Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class _Example(BaseSettings):
    # Storage: where things live.
    home: Path = Field(Path("./data"), description="Data | files")
    port: int = Field(80, ge=1, le=65535)
    password: SecretStr = SecretStr("hunter2-default")
    token: SecretStr | None = None

    # Behaviour.
    mode: Literal["fast", "safe"] = "safe"
    colour: _Colour = _Colour.RED
    enabled: bool = True
    ratio: float = Field(0.5, gt=0, le=1)
    key: SecretStr = Field(default_factory=lambda: SecretStr("x" * 40), min_length=32)


def test_sections_types_defaults_and_constraints_come_from_the_model() -> None:
    reference = render_reference(_Example)
    body = reference[reference.index("## ") :]
    assert body == (
        "## Storage\n\n"
        "Where things live.\n\n"
        "| Variable | Type | Default | Allowed | Description |\n"
        "|:--|:--|:--|:--|:--|\n"
        "| `HOME` | path | `./data` |  | Data \\| files |\n"
        "| `PORT` | integer | `80` | 1 to 65535 |  |\n"
        "| `PASSWORD` | secret | (secret) |  |  |\n"
        "| `TOKEN` | secret | unset |  |  |\n"
        "\n"
        "## Behaviour\n\n"
        "| Variable | Type | Default | Allowed | Description |\n"
        "|:--|:--|:--|:--|:--|\n"
        "| `MODE` | choice | `safe` | `fast`, `safe` |  |\n"
        "| `COLOUR` | choice | `red` | `red`, `blue` |  |\n"
        "| `ENABLED` | boolean | `true` | `true`, `false` |  |\n"
        "| `RATIO` | number | `0.5` | > 0, ≤ 1 |  |\n"
        "| `KEY` | secret | (secret) generated | at least 32 characters |  |\n"
    )
    assert "hunter2" not in reference


def test_the_console_script_prints_the_reference(workdir: Path) -> None:
    result = run_cli("config-reference", env=orchestrator_env(), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_reference(Settings)
    assert result.stderr == ""
