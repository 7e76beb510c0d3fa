"""How ``session watch`` lays out events: log parts joined into one line, JSON Lines
as sent, and which states end a watch."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console

from industrial_orchestrator.cli.badges import FINAL_STATES, badge, is_final
from industrial_orchestrator.cli.event_printer import HumanEventPrinter, JsonLinesPrinter
from industrial_orchestrator.domain.session_states import SessionState

AT = "2026-01-02T03:04:05Z"


def _log(text: str, part: int = 1, parts: int = 1, stream: str = "stdout") -> dict[str, Any]:
    payload = {"stream": stream, "text": text, "part": part, "parts": parts}
    return {"seq": 1, "type": "session.log", "at": AT, "payload": payload}


def _human(*events: dict[str, Any]) -> list[str]:
    out = io.StringIO()
    printer = HumanEventPrinter(Console(file=out, width=200, color_system=None))
    for event in events:
        printer.event(event, json.dumps(event))
    printer.finish()
    return out.getvalue().splitlines()


def test_the_parts_of_one_log_line_print_as_one_line_under_one_prefix():
    lines = _human(_log("abc", 1, 3), _log("def", 2, 3), _log("ghi", 3, 3))
    assert len(lines) == 1
    assert lines[0].endswith("stdout │ abcdefghi")


def test_log_text_is_written_as_it_is_and_ends_with_one_newline():
    lines = _human(_log("[bold]one\n\x1b[31mtwo\n"), _log("three"))
    assert len(lines) == 3
    assert lines[0].endswith("stdout │ [bold]one")
    assert lines[1] == "\x1b[31mtwo"
    assert lines[2].endswith("stdout │ three")


def test_a_line_left_open_is_ended_before_the_next_event():
    transition = {
        "seq": 2,
        "type": "session.transition",
        "at": AT,
        "payload": {"from": "RUNNING", "to": "FAILED", "actor": "system"},
    }
    lines = _human(_log("cut short", 1, 2), transition, _log("next", 1, 2, stream="agent"))
    assert lines[0].endswith("stdout │ cut short")
    assert "⚙️ RUNNING → ❌ FAILED" in lines[1]
    assert lines[2].endswith("agent │ next")


def test_json_lines_are_the_frames_as_sent():
    out = io.StringIO()
    raw = '{"seq":3,"type":"session.log","payload":{"text":"é\\n"}}'
    JsonLinesPrinter(out).event(json.loads(raw), raw)
    assert out.getvalue() == raw + "\n"


def test_a_watch_ends_on_states_a_session_never_leaves():
    assert {s.value for s in FINAL_STATES} == {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "STOPPED",
        "CANCELLED",
        "ORPHANED",
    }
    assert not is_final("PARTIALLY_COMPLETED"), "a partial result may still be resumed"
    assert not is_final("SOMETHING_NEW")


@pytest.mark.parametrize("state", list(SessionState))
def test_every_state_has_a_badge_with_its_emoji(state: SessionState):
    assert badge(state.value).plain.endswith(f" {state.value}")
    assert badge(state.value).style
