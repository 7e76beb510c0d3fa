"""How ``session watch`` lays out events: log parts joined into one line, JSON Lines
as sent, and which states end a watch."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console

from industrial_orchestrator.cli.badges import FINAL_STATES, badge, is_final
from industrial_orchestrator.cli.errors import CliError
from industrial_orchestrator.cli.event_printer import HumanEventPrinter, JsonLinesPrinter
from industrial_orchestrator.domain.sessions.states import SessionState

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


# -- task events -------------------------------------------------------------------------

TASKS = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(1, 8)]
AGENT = "abcdef12-0000-0000-0000-000000000000"


def _task(event_type: str, seq: int, /, **payload: Any) -> dict[str, Any]:
    return {"seq": seq, "type": event_type, "at": AT, "payload": payload}


class FakeDirectory:
    """The server's answers, counting the questions."""

    def __init__(self, tasks: list[tuple[str, str]], agents: dict[str, str]) -> None:
        self.tasks = tasks
        self.agents = agents
        self.asked_tasks = 0
        self.asked_agents: list[str] = []

    def session_tasks(self) -> list[tuple[str, str]]:
        self.asked_tasks += 1
        return self.tasks

    def agent_name(self, agent_id: str) -> str | None:
        self.asked_agents.append(agent_id)
        return self.agents.get(agent_id)


class DownDirectory:
    def session_tasks(self) -> list[tuple[str, str]]:
        raise CliError("the server is unreachable")

    def agent_name(self, agent_id: str) -> str | None:
        raise CliError("the server is unreachable")


def _human_with(directory: Any, *events: dict[str, Any]) -> list[str]:
    out = io.StringIO()
    printer = HumanEventPrinter(Console(file=out, width=300, color_system=None), directory)
    for event in events:
        printer.event(event, json.dumps(event))
    printer.finish()
    return [line.split("  ", 1)[1] for line in out.getvalue().splitlines()]


def test_task_events_name_the_task_by_its_place_in_the_plan_and_the_agent_by_name():
    plan = [(TASKS[n], f"Step {n + 1}") for n in range(7)]
    plan[2] = (TASKS[2], "Write tests")
    directory = FakeDirectory(plan, {AGENT: "coder-1"})
    # A watch started late (--since): the stream never showed these tasks' creation.
    lines = _human_with(
        directory,
        # As the server writes them: the move to RUNNING, then the lease, in one commit.
        _task("task.transition", 10, task_id=TASKS[2], **{"from": "READY", "to": "RUNNING"}),
        _task("task.leased", 11, task_id=TASKS[2], agent_id=AGENT, attempt=1),
        _task(
            "task.attempt_ended",
            12,
            task_id=TASKS[2],
            agent_id=AGENT,
            attempt=1,
            outcome="completed",
            error=None,
            tokens_used=1234,
            cost_usd=0.023167999999999998,
            execution_time_ms=12345,
        ),
        _task(
            "task.transition",
            13,
            task_id=TASKS[2],
            result_summary="Wrote 4 tests\nand more",
            **{"from": "RUNNING", "to": "COMPLETED"},
        ),
        _task("task.transition", 14, task_id=TASKS[3], **{"from": "PENDING", "to": "READY"}),
    )
    assert lines == [
        'task 3/7 "Write tests" READY → RUNNING (agent coder-1, attempt 1)',
        'task 3/7 "Write tests" attempt 1 by coder-1: completed  1,234 tokens, $0.02, 12.3 s',
        'task 3/7 "Write tests" RUNNING → COMPLETED (agent coder-1): Wrote 4 tests',
        'task 4/7 "Step 4" PENDING → READY',
    ]
    # Asked once for the plan, once for the agent: not per event.
    assert (directory.asked_tasks, directory.asked_agents) == (1, [AGENT])


def test_without_a_directory_the_stream_alone_numbers_the_plan():
    created = [
        _task("task.created", n + 2, task_id=TASKS[n], title=title, task_type="testing")
        for n, title in enumerate(["Design", "Build"])
    ]
    lines = _human_with(
        None,
        *created,
        _task("task.transition", 5, task_id=TASKS[1], **{"from": "PENDING", "to": "READY"}),
        _task("task.leased", 6, task_id=TASKS[1], agent_id=AGENT, attempt=2),
        _task("task.transition", 7, task_id=TASKS[6], **{"from": "READY", "to": "RUNNING"}),
    )
    assert lines == [
        'task 1/1 "Design" planned  testing',
        'task 2/2 "Build" planned  testing',
        'task 2/2 "Build" PENDING → READY',
        'task 2/2 "Build" leased to abcdef12 (attempt 2)',
        "task 00000007 READY → RUNNING",
    ]


def test_a_directory_that_cannot_answer_leaves_short_ids_and_is_not_asked_again():
    lines = _human_with(
        DownDirectory(),
        _task("task.transition", 3, task_id=TASKS[0], **{"from": "READY", "to": "RUNNING"}),
        _task("task.leased", 4, task_id=TASKS[0], agent_id=AGENT, attempt=1),
        _task("task.transition", 5, task_id=TASKS[0], **{"from": "RUNNING", "to": "FAILED"}),
    )
    assert lines == [
        "task 00000001 READY → RUNNING (agent abcdef12, attempt 1)",
        "task 00000001 RUNNING → FAILED (agent abcdef12)",
    ]


def test_a_move_to_running_without_its_lease_next_prints_as_it_is():
    to_running = {"from": "READY", "to": "RUNNING"}
    lines = _human_with(
        None,
        _task("task.transition", 3, task_id=TASKS[0], **to_running),
        _log("in between"),
        _task("task.transition", 5, task_id=TASKS[1], **to_running),
        # Another task's lease does not join the held line; the end prints what is held.
        _task("task.leased", 6, task_id=TASKS[0], agent_id=AGENT, attempt=2),
        _task("task.transition", 7, task_id=TASKS[0], **to_running),
    )
    assert lines == [
        "task 00000001 READY → RUNNING",
        "stdout │ in between",
        "task 00000002 READY → RUNNING",
        "task 00000001 leased to abcdef12 (attempt 2)",
        "task 00000001 READY → RUNNING",
    ]


def test_created_tasks_count_the_whole_plan_the_server_knows():
    directory = FakeDirectory([(TASKS[0], "Design"), (TASKS[1], "Build")], {})
    lines = _human_with(
        directory,
        _task(
            "task.created",
            2,
            task_id=TASKS[0],
            title="Design",
            task_type="design",
            required_capabilities=["architecture"],
        ),
        _task(
            "task.created",
            3,
            task_id=TASKS[1],
            title="Build",
            task_type="code_generation",
            depends_on=[TASKS[0]],
        ),
        _task("task.dependency_added", 4, task_id=TASKS[1], depends_on=TASKS[0]),
    )
    assert lines == [
        'task 1/2 "Design" planned  design · needs architecture',
        'task 2/2 "Build" planned  code_generation · after 1 other task(s)',
        'task 2/2 "Build" now waits for task 1/2 "Design"',
    ]
    assert directory.asked_tasks == 1


def test_usage_shows_money_rounded_and_tokens_grouped():
    directory = FakeDirectory([(TASKS[0], "Build")], {})
    [line] = _human_with(
        directory,
        _task(
            "session.telemetry",
            5,
            task_id=TASKS[0],
            attempt=1,
            task_tokens=1500,
            task_cost_usd=0.0032,
            tokens_used=120_000,
            cost_usd=0.023167999999999998,
        ),
    )
    assert line == (
        'usage  task 1/1 "Build" used 1,500 tokens ($0.0032); session total 120,000 tokens ($0.02)'
    )


def test_task_events_print_no_raw_json():
    kinds = {
        "task.loop_stopped": {
            "agent_id": AGENT,
            "attempt": 1,
            "kind": "repeated_tool_call",
            "message": "the same call 5 times",
            "rolled_back_count": 2,
            "requeued": True,
        },
        "task.decomposed": {"template": "crud", "score": 0.8, "subtasks": TASKS[1:4]},
    }
    lines = _human_with(
        None, *(_task(kind, 2, task_id=TASKS[0], **payload) for kind, payload in kinds.items())
    )
    assert lines == [
        "task 00000001 attempt 1 by abcdef12 stopped by the loop guard (repeated_tool_call): "
        "the same call 5 times; rolled back 2 file(s); back in the queue",
        "task 00000001 decomposed (crud) into 3 subtasks",
    ]
    assert not any("{" in line for line in lines)
