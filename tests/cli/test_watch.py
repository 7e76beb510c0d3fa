"""``orchestrator session watch`` against a real server: live events, the end of a
session, ``--since``, how logs and states are printed, and a server restart in the
middle of a watch that loses and repeats nothing."""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..server_process import ServerProcess, free_port
from .helpers import API, WatchProcess, act, create, flat, log, session_cli, stored_events, wait_for

pytestmark = pytest.mark.slow

INTERRUPTED = 130
LONG_LINE = "x" * 20_000 + " end of the long line"  # over 15 KiB: stored as two parts


def _seqs(events: list[dict[str, object]]) -> list[object]:
    return [event["seq"] for event in events]


def test_watch_shows_a_later_transition_and_exits_when_the_session_ends(
    url: str, http: httpx.Client, workdir: Path
):
    session_id = create(http)["id"]
    with WatchProcess(url, session_id, "--json", cwd=workdir) as watch:
        created = watch.next_event()
        assert (created["seq"], created["type"], created["session_id"]) == (
            1,
            "session.created",
            session_id,
        )

        act(http, session_id, "start")
        started = watch.next_event()
        assert (started["seq"], started["type"]) == (2, "session.transition")
        assert (started["payload"]["from"], started["payload"]["to"]) == ("PENDING", "RUNNING")
        assert watch.process.poll() is None, "RUNNING is not the end of the session"

        act(http, session_id, "complete", reason="done")
        rest = [json.loads(line) for line in watch.rest()]

        assert watch.wait() == 0, watch.stderr
    assert [(e["seq"], e["payload"]["to"]) for e in rest] == [(3, "COMPLETED")]
    assert [created, started, *rest] == stored_events(http, session_id)
    assert watch.stderr == ""


def test_watch_since_skips_the_events_already_seen(url: str, http: httpx.Client, workdir: Path):
    session_id = create(http)["id"]
    act(http, session_id, "start")
    log(http, session_id, "one line")
    act(http, session_id, "stop")

    result = session_cli(url, "watch", session_id, "--json", "--since", "2", cwd=workdir)

    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events == stored_events(http, session_id)[2:]
    assert _seqs(events) == [3, 4]


def test_watch_prints_badges_and_log_lines_whole(url: str, http: httpx.Client, workdir: Path):
    session_id = create(http, "readable")["id"]
    act(http, session_id, "start")
    assert log(http, session_id, LONG_LINE) == 2
    log(http, session_id, "first\nsecond\n", stream="agent")
    http.post(f"{API}/sessions/{session_id}/checkpoints", json={"label": "saved"})
    act(http, session_id, "pause")
    act(http, session_id, "stop", reason="enough")

    result = session_cli(url, "watch", session_id, cwd=workdir)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    long_lines = [line for line in lines if "x" * 100 in line]
    assert len(long_lines) == 1, "the two parts of one log line must print as one line"
    assert long_lines[0].endswith(LONG_LINE)
    assert "stdout" in long_lines[0]
    agent = lines.index(next(line for line in lines if line.endswith("first")))
    assert "agent" in lines[agent]
    assert lines[agent + 1] == "second"
    text = "\n".join(lines)
    for shown in ("⏳ PENDING", "⚙️ RUNNING", "⏸️ PAUSED", "🛑 STOPPED", "enough", '"saved"'):
        assert shown in text
    assert "🛑 STOPPED" in lines[-1]


def test_watch_of_an_unknown_or_malformed_session_exits_1(url: str, workdir: Path):
    unknown = str(uuid.uuid4())
    result = session_cli(url, "watch", unknown, cwd=workdir)
    assert result.returncode == 1
    assert flat(result.stderr) == f"error: Session {unknown} does not exist"

    malformed = session_cli(url, "watch", "not-an-id", cwd=workdir)
    assert malformed.returncode == 1
    assert "is not a session id" in malformed.stderr

    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = session_cli(nowhere, "watch", unknown, cwd=workdir)
    assert unreachable.returncode == 1
    assert f"the orchestrator server at {nowhere} is unreachable" in flat(unreachable.stderr)
    assert "orchestrator serve" in flat(unreachable.stderr)


def test_watch_follow_keeps_going_after_the_end_until_ctrl_c(
    url: str, http: httpx.Client, workdir: Path
):
    session_id = create(http)["id"]
    act(http, session_id, "cancel")
    with WatchProcess(url, session_id, "--json", "--follow", cwd=workdir) as watch:
        ended = watch.until_seq(2)[-1]
        assert ended["payload"]["to"] == "CANCELLED"
        assert watch.process.poll() is None, "--follow must not stop at the end"
        # Logs may still arrive after the end; --follow shows them.
        log(http, session_id, "post-mortem")
        assert watch.next_event()["payload"]["text"] == "post-mortem"

        watch.process.send_signal(signal.SIGINT)

        assert watch.wait() == INTERRUPTED
        assert "Traceback" not in watch.stderr
        assert watch.rest() == []


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "home"), "LOG_LEVEL": "WARNING"}
    with ServerProcess(env, tmp_path / "server") as server:
        server.start()
        yield server


def test_watch_survives_a_server_restart_without_losing_or_repeating_events(
    restartable: ServerProcess, workdir: Path
):
    server = restartable
    with server.client() as http:
        session_id = create(http)["id"]
        act(http, session_id, "start")
        log(http, session_id, "before the restart")
    with WatchProcess(server.base_url, session_id, "--json", cwd=workdir) as watch:
        assert _seqs(watch.until_seq(3)) == [1, 2, 3]

        server.kill()
        wait_for(lambda: "reconnecting" in watch.stderr, "the watcher to notice the drop")
        server.start()  # same port, same database

        with server.client() as http:
            log(http, session_id, "after the restart")
            act(http, session_id, "pause", reason="look")
            act(http, session_id, "resume")
            log(http, session_id, LONG_LINE)
            act(http, session_id, "complete")
            stored = stored_events(http, session_id)

        printed = [json.loads(line) for line in watch.rest()]
        assert watch.wait() == 0, watch.stderr

    events = [json.loads(line) for line in watch.lines]
    assert events[3:] == printed
    assert _seqs(events) == list(range(1, len(stored) + 1))
    assert events == stored
    texts = [e["payload"]["text"] for e in events if e["type"] == "session.log"]
    assert texts[:2] == ["before the restart", "after the restart"]
    assert len(texts) == 4
    assert "".join(texts[2:]) == LONG_LINE
    assert events[-1]["payload"]["to"] == "COMPLETED"
    notices = watch.stderr.splitlines()
    assert notices, "a reconnection must be announced on stderr"
    assert all(line.startswith("reconnecting") for line in notices), watch.stderr


def test_watch_of_an_ended_session_prints_what_is_stored_and_exits(
    url: str, http: httpx.Client, workdir: Path
):
    session_id = create(http)["id"]
    act(http, session_id, "start")
    act(http, session_id, "stop")
    log(http, session_id, "a line written after the end")

    everything = session_cli(url, "watch", session_id, "--json", cwd=workdir)
    past_the_end = session_cli(url, "watch", session_id, "--json", "--since", "4", cwd=workdir)

    assert everything.returncode == 0, everything.stderr
    events = [json.loads(line) for line in everything.stdout.splitlines()]
    assert events == stored_events(http, session_id)
    assert _seqs(events) == [1, 2, 3, 4]
    assert past_the_end.returncode == 0, past_the_end.stderr
    assert past_the_end.stdout == ""


def _leased_task_session(http: httpx.Client) -> tuple[str, str, str]:
    """A session with a plan of two tasks, the second leased to an external agent; the
    session's id, the second task's id and the agent's name."""
    session_id = create(http, "planned")["id"]
    act(http, session_id, "start")
    ids = []
    for title in ("Design the module", "Write tests"):
        made = http.post(
            f"{API}/tasks",
            json={"title": title, "session_id": session_id, "required_capabilities": ["qa"]},
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    ready = http.patch(f"{API}/tasks/{ids[1]}", json={"status": "READY"})
    assert ready.status_code == 200, ready.text
    name = f"coder-{uuid.uuid4().hex[:6]}"
    registered = http.post(
        f"{API}/agents/external/register",
        json={
            "protocol_version": "1.0",
            "name": name,
            "version": "1",
            "agent_type": "tester",
            "capabilities": ["qa"],
        },
    )
    assert registered.status_code == 201, registered.text
    agent = registered.json()
    leased = http.post(
        f"{API}/agents/external/{agent['agent_id']}/tasks/next",
        headers={"Authorization": f"Bearer {agent['auth_token']}", "X-Agent-ID": agent["agent_id"]},
    )
    assert leased.status_code == 200, leased.text
    return session_id, ids[1], name


def test_watch_prints_task_events_as_sentences_and_json_as_sent(
    url: str, http: httpx.Client, workdir: Path
):
    session_id, task_id, name = _leased_task_session(http)
    with WatchProcess(url, session_id, cwd=workdir) as watch:
        # Still RUNNING: the stored events come over the live stream, then the stop.
        while not any("RUNNING (agent" in line for line in watch.lines):
            assert watch.next_line() is not None, watch.stderr
        act(http, session_id, "stop")
        watch.rest()
        assert watch.wait() == 0, watch.stderr
    text = "\n".join(watch.lines)
    assert 'task 1/2 "Design the module" planned' in text
    assert 'task 2/2 "Write tests" PENDING → READY' in text
    assert f'task 2/2 "Write tests" READY → RUNNING (agent {name}, attempt 1)' in text
    assert '"task_id"' not in text, "no task event may print as raw JSON"

    # Started past the tasks' creation, the watch asks the server for the plan.
    late = session_cli(url, "watch", session_id, "--since", "4", cwd=workdir)
    assert late.returncode == 0, late.stderr
    assert f'task 2/2 "Write tests" READY → RUNNING (agent {name}, attempt 1)' in late.stdout
    assert "planned" not in late.stdout

    raw = session_cli(url, "watch", session_id, "--json", cwd=workdir)
    events = [json.loads(line) for line in raw.stdout.splitlines()]
    assert events == stored_events(http, session_id)
    assert any(e["type"] == "task.leased" and e["payload"]["task_id"] == task_id for e in events)
