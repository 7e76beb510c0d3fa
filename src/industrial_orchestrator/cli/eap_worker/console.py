"""What the worker prints about itself, on stderr (a command's output goes to stdout):
its console, and the yellow ``warning:`` lines for what went wrong without stopping it."""

from __future__ import annotations

from rich.console import Console


def worker_console() -> Console:
    """The worker's console: stderr, long lines kept whole, nothing highlighted."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def short_id(task_id: str) -> str:
    """The task id's first eight characters: enough to tell tasks apart in a log."""
    return task_id[:8]


class Warn:
    """Prints a yellow ``warning:`` line on the worker's console."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def __call__(self, message: str) -> None:
        self._console.print(f"warning: {message}", style="yellow", markup=False)
