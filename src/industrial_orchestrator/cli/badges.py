"""State badges: the emoji and colour of the user guide's state reference table."""

from __future__ import annotations

from rich.text import Text

from ..domain.sessions.states import STATE_TABLE, SessionState, allowed_targets

# States a session never leaves. PARTIALLY_COMPLETED is terminal in the reference table
# but may still be resumed or accepted, so a watcher keeps watching it.
FINAL_STATES = frozenset(state for state in SessionState if not allowed_targets(state))


def _state(name: object) -> SessionState | None:
    try:
        return SessionState(str(name))
    except ValueError:
        return None


def badge(name: object) -> Text:
    """``⚙️ RUNNING`` in the state's colour; an unknown name is shown as it is."""
    state = _state(name)
    if state is None:
        return Text(str(name), style="bold")
    info = STATE_TABLE[state]
    return Text(f"{info.emoji} {state.value}", style=f"bold {info.color}")


def is_final(name: object) -> bool:
    """Whether a session in state ``name`` can no longer change."""
    return _state(name) in FINAL_STATES
