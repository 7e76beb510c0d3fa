"""``orchestrator demo``: the whole glass box at work without an API key.

It starts the orchestrator with a managed OpenCode whose only model is the scripted
model of the test suite (clearly not a real LLM), makes a small sample repository and
runs a session on it: planned by the architect agent, coded, tested and documented by
the others, verified, all live on the API and dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..domain.money import format_usd

err = Console(stderr=True, soft_wrap=True, highlight=False)
out = Console(soft_wrap=True, highlight=False)

BANNER = (
    "[bold yellow]DEMO[/] - the agents' model is the scripted model of the test suite, "
    "not a real LLM: it follows directives written in the prompt. No API key is used."
)
LOCAL_OPENCODE = Path(".opencode/node_modules/opencode-linux-x64/bin/opencode")


def demo_command(
    host: Annotated[str, typer.Option(help="Address to bind (loopback only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind")] = 8000,
    home: Annotated[
        Path, typer.Option(help="Where the demo keeps its database, repository and trees")
    ] = Path(".orchestrator/demo"),
    exit_when_done: Annotated[
        bool,
        typer.Option(
            "--exit-when-done",
            help="Exit when the session ends: 0 when COMPLETED, 1 otherwise",
        ),
    ] = False,
) -> None:
    """Run a sample session through OpenCode with a scripted model, and keep serving."""
    from .server_commands import is_loopback

    if not is_loopback(host):
        err.print("[bold red]error:[/] the demo binds a loopback address only")
        raise typer.Exit(2)
    binary = _opencode_binary()
    err.print(BANNER)
    try:
        code = asyncio.run(_demo(host, port, home.resolve(), binary, exit_when_done))
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


def _opencode_binary() -> Path:
    configured = os.environ.get("OPENCODE_BIN")
    for candidate in (
        Path(configured) if configured else None,
        LOCAL_OPENCODE.resolve(),
        Path(found) if (found := shutil.which("opencode")) else None,
    ):
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    err.print(
        "[bold red]error:[/] the demo needs the opencode binary: run `make demo` (it "
        "installs it under .opencode/), or set OPENCODE_BIN"
    )
    raise typer.Exit(2)


async def _demo(host: str, port: int, home: Path, binary: Path, exit_when_done: bool) -> int:
    import httpx
    import uvicorn

    from ..api.app import create_app
    from ..config import load_settings
    from ..demo import sample
    from ..kept_secrets import with_kept_secret_key
    from ..logs import configure_logging
    from ..testing.scripted_model import ScriptedModel, opencode_config

    repository = await asyncio.to_thread(sample.make_sample_repository, home / "calc")
    # OpenCode, started by us, keeps its state in the demo's home, not the user's.
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[name] = str(home / "opencode" / name.lower())
    os.environ["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
    async with ScriptedModel() as model:
        settings = load_settings(
            _env_file=None,
            orchestrator_home=home / "orchestrator",
            engine_enabled=True,
            internal_agents=True,
            engine_tick_seconds=0.25,
            opencode_bin=binary,
            opencode_config=json.dumps(opencode_config(model.base_url)),
            opencode_model="scripted/coder",
            workspace_roots=str(home),
            log_level="WARNING",
        )
        # Restarted, the demo signs with the same key: its agents' tokens stay valid.
        settings = with_kept_secret_key(settings)
        configure_logging(settings.log_level)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                lifespan="on",
                server_header=False,
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                return 1
            await asyncio.sleep(0.1)
        base = f"http://{host}:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            created = await api.post(
                "/api/v1/sessions",
                json={
                    "title": sample.TITLE,
                    "initial_prompt": sample.PROMPT,
                    "workspace": str(repository),
                    "planner": "agent",
                    "verify_command": sample.VERIFY_COMMAND,
                    "auto_start": True,
                },
            )
            created.raise_for_status()
            session_id = created.json()["id"]
            out.print(f"session:   {base}/sessions/{session_id}")
            out.print(f"API:       {base}/api/v1/sessions/{session_id}")
            final = await _follow(api, session_id)
        code = 0 if final["status"] == "COMPLETED" else 1
        if exit_when_done:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            return code
        out.print(f"still serving on {base} (Ctrl-C to stop)")
        await serving
        return code


async def _follow(api: Any, session_id: str) -> dict[str, Any]:
    """Print the session's terminal as it goes, then its outcome."""
    since = 0
    while True:
        page = (
            await api.get(f"/api/v1/sessions/{session_id}/events", params={"since": since})
        ).json()
        for event in page["items"]:
            _show(event)
        since = page["next_since"]
        session = (await api.get(f"/api/v1/sessions/{session_id}")).json()
        if session["terminal"] and not page["items"]:
            break
        await asyncio.sleep(0.3)
    files: list[str] = []
    if session.get("worktree"):
        diff = await api.get(f"/api/v1/sessions/{session_id}/diff")
        if diff.status_code == 200:
            files = diff.json()["files"]
    colour = "green" if session["status"] == "COMPLETED" else "red"
    out.print(
        f"[bold {colour}]{session['status_emoji']} {session['status']}[/] "
        f"{escape(session['status_reason'] or '')}"
    )
    out.print(f"tokens:    {session['tokens_used']}  (cost {format_usd(session['cost_usd'])})")
    out.print(f"branch:    {session.get('branch')}  in {session.get('worktree')}")
    out.print(f"changed:   {', '.join(files) or '(nothing)'}")
    return dict(session)


def _show(event: dict[str, Any]) -> None:
    payload = event["payload"]
    kind = event["type"]
    if kind == "session.log":
        text = escape(str(payload["text"]).rstrip("\n"))
        out.print(f"  [dim]{payload['stream']:>6}[/] {text}")
    elif kind == "session.transition":
        reason = escape(payload.get("reason") or "")
        out.print(f"[bold]state[/] {payload['from']} -> {payload['to']}  {reason}")
    elif kind == "session.phase":
        out.print(f"[bold]phase[/] {payload['to']}  {escape(payload.get('reason') or '')}")
    elif kind == "task.created":
        out.print(f"[cyan]task[/]  {escape(str(payload.get('title')))}: created")
    elif kind == "task.transition":
        out.print(f"[cyan]task[/]  {payload['task_id'][:8]}: {payload['from']} -> {payload['to']}")
