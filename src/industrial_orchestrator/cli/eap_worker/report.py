"""The end of a task: its Task Result, sent to ``POST .../{agent_id}/tasks/{id}/result``,
and the line the worker prints about it.

The result carries the attempt number as fencing token: when the lease went to another
agent meanwhile, the server answers 409 ``lease_lost`` and the result is dropped. While
the orchestrator is down or restarting, the result is sent again patiently (the task stays
in the heartbeats meanwhile, so its lease holds); after a refused token, it is sent with
the new one.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from rich.console import Console
from rich.text import Text

from ...domain.money import format_usd
from ..errors import describe
from .command import Ran
from .membership import Membership
from .output import SUMMARY_CHARS, TaskOutput
from .protocol import EAP, RETRY_SECONDS, Json, error_code, error_message

REPORT_TRIES = 3
REPORT_PATIENCE_SECONDS = 300.0
MAX_REPORT_BACKOFF_SECONDS = 5.0


def result_of(assignment: Json, ran: Ran, output: TaskOutput, elapsed: float) -> Json:
    """The Task Result: completed on exit status 0, else failed with the reason."""
    completed = ran.cut_short is None and ran.exit_code == 0
    result: Json = {
        "task_id": str(assignment["task_id"]),
        "attempt": assignment["attempt"],
        "status": "completed" if completed else "failed",
        "output_data": {"exit_code": ran.exit_code, "summary": output.summary},
        "execution_time_ms": int(elapsed * 1000),
        **ran.usage,
    }
    if not completed:
        tail = output.tail.strip()
        result["error"] = (
            ran.cut_short or tail or f"exited with status {ran.exit_code} and printed nothing"
        )
    return result


async def send_result(membership: Membership, result: Json) -> str | None:
    """Send the result; None once recorded, else what became of it. While the
    orchestrator cannot be reached or answers 5xx (a restart), the result is sent
    again for up to ``REPORT_PATIENCE_SECONDS``: the task stays in the heartbeats
    meanwhile, so its lease holds. A refusal is tried ``REPORT_TRIES`` times."""
    url = f"{EAP}/{membership.agent_id}/tasks/{result['task_id']}/result"
    failure = "not sent"
    refusals = 0
    give_up_at = time.monotonic() + REPORT_PATIENCE_SECONDS
    trial = 0
    while True:
        trial += 1
        if membership.revoked is not None:
            return f"not recorded: {membership.revoked}"
        sent_token = membership.token
        try:
            response = await membership.http.post(url, json=result, headers=membership.auth())
        except httpx.TransportError as exc:
            # If the first try did land, a retry is refused as lease_lost: harmless.
            failure = describe(exc)
        else:
            if not response.is_error:
                return None
            if error_code(response) == "lease_lost":
                return "lease lost: another agent owns the task now, result dropped"
            failure = error_message(response)
            if response.status_code < 500:
                refusals += 1
                if response.status_code == 401 and await membership.rejoin(response, sent_token):
                    if refusals < REPORT_TRIES:
                        continue
                elif response.status_code not in (401, 409):
                    break
        if refusals >= REPORT_TRIES or time.monotonic() >= give_up_at:
            break
        if membership.stopping.is_set() and trial >= REPORT_TRIES:
            break  # asked to stop: no waiting for a server that may not come back
        await asyncio.sleep(min(trial * RETRY_SECONDS, MAX_REPORT_BACKOFF_SECONDS))
    return f"result not recorded: {failure}"


def print_end(
    console: Console, task_id: str, result: Json, elapsed: float, recorded: str | None
) -> None:
    """``✔``/``✘ task ... in N s (exit N): <summary or reason> [usage]``, and what became
    of the result when it was not recorded."""
    completed = result["status"] == "completed"
    exit_code = result["output_data"]["exit_code"]
    detail = result["output_data"]["summary"] if completed else result["error"]
    first_line = detail.strip().splitlines()[-1] if detail.strip() else ""
    line = Text.assemble(
        ("✔ " if completed else "✘ ", "bold green" if completed else "bold red"),
        f"task {task_id} {result['status']} in {elapsed:.1f} s (exit {exit_code})",
    )
    if first_line:
        line.append(f": {first_line[:SUMMARY_CHARS]}")
    if "tokens_used" in result or "cost_usd" in result:
        spent = [f"{result['tokens_used']} tokens"] if "tokens_used" in result else []
        if "cost_usd" in result:
            spent.append(format_usd(float(result["cost_usd"])))
        line.append(f" [{', '.join(spent)}]")
    if recorded is not None:
        line.append(f" - {recorded}", style="yellow")
    console.print(line)
