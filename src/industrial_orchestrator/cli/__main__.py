"""``python -m industrial_orchestrator.cli``: the same as the ``orchestrator`` command."""

from . import app

app(prog_name="orchestrator")
