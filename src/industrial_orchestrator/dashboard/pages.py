"""The "Glass Box" dashboard (user guide §3): overview, sessions, session detail, agent
fleet and task decomposition pages.

Pages read the services directly and render on the server. Their script keeps them live:
it follows the page's event stream over WebSocket and asks for a region again
(``?fragment=``) when an event concerns it; commands go to the REST API under /api/v1, so
the dashboard can do nothing an API client cannot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..bootstrap import Components
from ..domain.agents.agent import AgentStatus
from ..domain.agents.tiers import Tier
from ..domain.errors import ExecutorUnavailable, NotFound
from ..domain.events import EventType
from ..domain.priorities import Priority
from ..domain.sessions.actions import allowed_actions
from ..domain.sessions.options import TEMPLATE_CHOICES
from ..domain.sessions.outcomes import Outcome, states_of
from ..domain.sessions.session import Session, running_seconds
from ..domain.sessions.states import RUNNING_STATES, STATE_TABLE, SessionState
from ..domain.tasks.task import Task, TaskStatus, is_finished
from ..executors.opencode.client import OpenCodeError
from ..executors.opencode.runtime import opencode_client
from ..services.agents import AgentFilter
from ..services.ports import SessionQuery
from ..services.sessions import utc_now
from ..services.worktree_conflicts import worktree_conflicts
from .graph_layout import layout
from .rendering import page

router = APIRouter(include_in_schema=False)

T = TypeVar("T")
S = SessionState

PAGE_SIZE = 20
RECENT_ACTIVITY = 15
CHECKPOINTS_SHOWN = 50
TASKS_SHOWN = 500
PLANNED_SHOWN = 50
MAX_DIFF_BYTES = 256 * 1024
# The verbs the session header offers, in the guide's order.
HEADER_VERBS = ("start", "pause", "resume", "stop", "retry", "cancel")


def _components(request: Request) -> Components:
    built: Components = request.app.state.components
    return built


def _parse_id(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


async def _lookup(raw: str, load: Callable[[UUID], Awaitable[T]]) -> T | None:
    """What ``load`` finds under the id ``raw``; None for a malformed or unknown id."""
    found = _parse_id(raw)
    if found is None:
        return None
    try:
        return await load(found)
    except NotFound:
        return None


def _missing(request: Request, what: str) -> HTMLResponse:
    return page(request, "missing.html", {"what": what}, regions={}, status_code=404)


@router.get("/dashboard/states.css")
async def state_colours() -> Response:
    """The state colours as CSS classes, made from the state table (one copy of it)."""
    rules = [f".state-{info.state.value}{{--state:{info.color}}}" for info in STATE_TABLE.values()]
    return Response(
        "\n".join(rules) + "\n",
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600"},
    )


# -- overview ------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    built = _components(request)
    stats = await built.sessions.stats()
    fleet = await built.agents.stats()
    recent = await built.events.latest(
        limit=RECENT_ACTIVITY,
        types=(EventType.SESSION_TRANSITION, EventType.SESSION_CREATED),
    )
    titles: dict[UUID, str] = {}
    for event in recent:
        if event.session_id is not None and event.session_id not in titles:
            shown = await _lookup(str(event.session_id), built.sessions.get)
            titles[event.session_id] = shown.title if shown else "(gone)"
    context = {
        "stats": stats,
        "counters": [
            _counter("RUNNING", stats.by_state, (S.RUNNING, S.DEGRADED), "RUNNING + DEGRADED"),
            _counter(
                "PENDING",
                stats.by_state,
                (S.PENDING,),
                f"+ {stats.by_state.get(S.QUEUED, 0)} QUEUED",
            ),
            _counter(
                "COMPLETED",
                stats.by_state,
                states_of(Outcome.SUCCEEDED),
                f"{stats.by_state.get(S.PARTIALLY_COMPLETED, 0)} of them partially",
            ),
            _counter(
                "FAILED",
                stats.by_state,
                states_of(Outcome.FAILED),
                f"{stats.by_state.get(S.TIMEOUT, 0)} of them timed out",
            ),
            # Apart from FAILED: the operator ended these, so they say nothing about the
            # work and the success rate leaves them out (domain/sessions/outcomes.py).
            _counter(
                "STOPPED",
                stats.by_state,
                states_of(Outcome.ENDED_BY_OPERATOR),
                f"{stats.by_state.get(S.CANCELLED, 0)} of them cancelled",
            ),
        ],
        "fleet": fleet,
        "recent": recent,
        "titles": titles,
        "since": await built.events.last_id(),
    }
    return page(
        request,
        "overview.html",
        context,
        regions={"counters": "overview_counters.html", "activity": "overview_activity.html"},
    )


@dataclass(frozen=True, slots=True)
class Counter:
    name: str
    value: int
    note: str
    states: tuple[SessionState, ...]

    @property
    def link(self) -> str:
        return "/sessions?" + urlencode([("status", state.value) for state in self.states])


def _counter(
    name: str,
    by_state: dict[SessionState, int],
    states: tuple[SessionState, ...],
    note: str,
) -> Counter:
    return Counter(name, sum(by_state.get(state, 0) for state in states), note, states)


# -- sessions ------------------------------------------------------------------------


@router.get("/sessions", response_class=HTMLResponse)
async def sessions_page(
    request: Request,
    status: Annotated[list[str] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    built = _components(request)
    chosen = [SessionState(s) for s in status or () if s in SessionState.__members__]
    text = (q or "").strip() or None
    items, total = await built.sessions.search(
        SessionQuery(
            statuses=chosen,
            text=text,
            offset=(page_number - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
    )
    pages = max(1, -(-total // PAGE_SIZE))
    context = {
        "sessions": items,
        "total": total,
        "page": page_number,
        "pages": pages,
        "chosen": {state.value for state in chosen},
        "q": text or "",
        "counts": (await built.sessions.stats()).by_state,
        "priorities": [p.value for p in Priority],
        "default_priority": built.settings.default_session_priority.value,
        "template_choices": TEMPLATE_CHOICES,
        "roots": [str(root) for root in built.settings.workspace_root_paths],
        "since": await built.events.last_id(),
        "link": _link_builder(chosen, text),
    }
    return page(request, "sessions.html", context, regions={"list": "sessions_list.html"})


def _link_builder(chosen: Sequence[SessionState], text: str | None) -> Callable[..., str]:
    """``link(page=2)`` or ``link(toggle="FAILED")``: the list URL with one thing changed."""

    def link(*, page: int = 1, toggle: str | None = None, clear: bool = False) -> str:
        states = [] if clear else [state.value for state in chosen]
        if toggle is not None:
            states = [s for s in states if s != toggle] if toggle in states else [*states, toggle]
        params = [("status", state) for state in states]
        if text:
            params.append(("q", text))
        if page > 1:
            params.append(("page", str(page)))
        query = urlencode(params)
        return "/sessions" + (f"?{query}" if query else "")

    return link


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
async def session_page(request: Request, session_id: str) -> HTMLResponse:
    built = _components(request)
    session = await _lookup(session_id, built.sessions.get)
    if session is None:
        return _missing(request, f"session {session_id!r}")
    fragment = request.query_params.get("fragment")

    def shown(*regions: str) -> bool:
        """Whether this request draws one of ``regions``: a live refresh of one region
        reads only what that region shows."""
        return fragment is None or fragment in regions

    context: dict[str, Any] = {"session": session}
    if shown("header"):
        allowed = set(allowed_actions(session.status))
        context["info"] = STATE_TABLE[session.status]
        context["verbs"] = [(verb, verb in allowed) for verb in HEADER_VERBS]
        context["retry"] = await built.sessions.retried_as(session.id)
        context["forks"] = await built.sessions.forks_of(session.id)
    if shown("checkpoints"):
        context["checkpoints"], context["checkpoint_total"] = await built.sessions.checkpoints(
            session.id, offset=0, limit=CHECKPOINTS_SHOWN
        )
    if shown("tasks", "telemetry"):
        context["tasks"] = await _work_of(built, session.id)
    if shown("telemetry"):
        context.update(await _telemetry(built, session, context["tasks"]))
    if shown("permissions"):
        context["permissions"], context["permissions_note"] = await _permissions(request, session)
    if fragment == "diff" or (fragment is None and STATE_TABLE[session.status].terminal):
        context["diff"] = await _diff(built, session)
    if fragment is None:  # the fork dialog offers the registered agents' names
        context["agent_names"] = sorted(a.name for a in await built.agents.search(AgentFilter()))
    return page(
        request,
        "session.html",
        context,
        regions={
            "header": "session_header.html",
            "telemetry": "session_telemetry.html",
            "checkpoints": "session_checkpoints.html",
            "tasks": "session_tasks.html",
            "permissions": "session_permissions.html",
            "diff": "session_diff.html",
        },
    )


async def _work_of(built: Components, session_id: UUID) -> list[Task]:
    """The session's work: the leaves of its plan (a task split into subtasks only sums
    them up)."""
    tasks, _ = await built.tasks.search(session_id=session_id, limit=TASKS_SHOWN)
    parents = {task.parent_id for task in tasks}
    return [task for task in tasks if task.id not in parents]


async def _telemetry(built: Components, session: Session, work: list[Task]) -> dict[str, Any]:
    finished = [task for task in work if task.status in _ENDED_TASKS]
    succeeded = [task for task in finished if is_finished(task.status)]
    # Running time, the clock the timeout is measured on: pauses and the queue do not count.
    ran = running_seconds(await built.sessions.history(session.id), utc_now())
    limit = session.options.timeout_seconds or built.settings.session_timeout_seconds
    return {
        "task_success": len(succeeded) / len(finished) if finished else None,
        "tasks_done": len(succeeded),
        "tasks_finished": len(finished),
        "duration": ran,
        "ticking": session.status in RUNNING_STATES,
        "token_share": (
            session.tokens_used / session.options.max_tokens if session.options.max_tokens else None
        ),
        "time_limit": limit,
        "time_share": ran / limit,
    }


async def _permissions(request: Request, session: Session) -> tuple[list[dict[str, Any]], str]:
    """Requests waiting for the operator, or why there can be none to show."""
    if session.worktree is None:
        return [], "none: the session has no working tree yet"
    if STATE_TABLE[session.status].terminal:
        return [], "none: the session has ended"
    try:
        client = opencode_client(getattr(request.app.state, "opencode", None))
        pending = await client.permissions(session.worktree.path)
    except (ExecutorUnavailable, OpenCodeError) as exc:
        return [], str(exc)
    return [item for item in pending if isinstance(item, dict)], "none pending"


async def _diff(built: Components, session: Session) -> dict[str, Any] | None:
    if session.worktree is None:
        return None
    tree = Path(session.worktree.path)
    if not await asyncio.to_thread(tree.is_dir):
        return {"files": [], "text": "", "note": f"the working tree {tree} is gone"}
    base = session.worktree.base_commit
    found = await worktree_conflicts(built.uow, built.trees, session)
    return {
        "files": found.files,
        "text": await built.trees.diff(tree, base, max_bytes=MAX_DIFF_BYTES),
        "note": "",
        "conflicts": found.conflicts,
    }


_ENDED_TASKS = {TaskStatus.COMPLETED, TaskStatus.SKIPPED, TaskStatus.FAILED, TaskStatus.CANCELLED}


# -- agents --------------------------------------------------------------------------


@router.get("/agents", response_class=HTMLResponse)
async def agents_page(
    request: Request,
    capability: Annotated[str | None, Query(max_length=64)] = None,
    tier: Annotated[str | None, Query(max_length=16)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    built = _components(request)
    everyone = await built.agents.search(AgentFilter())
    chosen_tier = Tier(tier) if tier is not None and tier in Tier.__members__ else None
    chosen_status = AgentStatus(status) if status in {s.value for s in AgentStatus} else None
    wanted = (capability or "").strip().lower() or None
    agents = await built.agents.search(
        AgentFilter(
            capabilities=(wanted,) if wanted else (),
            tiers=(chosen_tier,) if chosen_tier else (),
            statuses=(chosen_status,) if chosen_status else (),
        )
    )
    context = {
        "agents": sorted(agents, key=lambda a: (a.status == AgentStatus.OFFLINE, a.name)),
        "capabilities": sorted({cap for agent in everyone for cap in agent.capabilities}),
        "tiers": [t.value for t in Tier],
        "statuses": [s.value for s in AgentStatus],
        "capability": wanted or "",
        "tier": chosen_tier.value if chosen_tier else "",
        "status": chosen_status.value if chosen_status else "",
        "fleet": await built.agents.stats(),
        "since": await built.events.last_id(),
        "now": utc_now(),
    }
    return page(request, "agents.html", context, regions={"fleet": "agents_table.html"})


# -- tasks ---------------------------------------------------------------------------


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(
    request: Request, session: Annotated[str | None, Query(max_length=64)] = None
) -> HTMLResponse:
    """The plan of one session (``?session=``; default: the newest session with one)."""
    built = _components(request)
    chosen: tuple[Session, Task] | None = None
    if session:
        found = await _lookup(session, built.sessions.get)
        if found is None:
            return _missing(request, f"session {session!r}")
        root = await _root_of(built, found.id)
        chosen = (found, root) if root is not None else None
    # The list of sessions to choose from is drawn with the whole page, not with each
    # refresh of its plan (which only needs the default choice, when none was made).
    refresh = request.query_params.get("fragment") is not None
    planned = await _planned(built, first_only=refresh and not session)
    if chosen is None and not session and planned:
        chosen = planned[0]
    context: dict[str, Any] = {"planned": planned, "chosen": chosen[0] if chosen else None}
    if chosen is not None:
        context.update(await _plan_context(built, chosen[1].id, focus=None))
        context["since"] = 0
    return page(request, "tasks.html", context, regions={"plan": "task_plan.html"})


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(request: Request, task_id: str) -> HTMLResponse:
    built = _components(request)
    task = await _lookup(task_id, built.tasks.get)
    if task is None:
        return _missing(request, f"task {task_id!r}")
    root = await _top(built, task)
    context: dict[str, Any] = {
        "task": task,
        "session": await built.sessions.get(task.session_id) if task.session_id else None,
        "attempts": await built.leases.attempts(task.id),
        "artifacts": await built.leases.artifacts(task.id),
        "agents": {agent.id: agent.name for agent in await built.agents.search(AgentFilter())},
    }
    context.update(await _plan_context(built, root.id, focus=task.id))
    return page(
        request,
        "task.html",
        context,
        regions={"plan": "task_plan.html", "detail": "task_detail.html"},
    )


async def _planned(built: Components, *, first_only: bool) -> list[tuple[Session, Task]]:
    """The newest sessions that have a plan, newest first, with their plan roots."""
    recent, _ = await built.sessions.search(SessionQuery(limit=PLANNED_SHOWN))
    planned: list[tuple[Session, Task]] = []
    for candidate in recent:
        root = await _root_of(built, candidate.id)
        if root is not None:
            planned.append((candidate, root))
            if first_only:
                break
    return planned


async def _root_of(built: Components, session_id: UUID) -> Task | None:
    """The session's plan root (the engine gives each session one, created first)."""
    first, _ = await built.tasks.search(session_id=session_id, limit=1)
    return await _top(built, first[0]) if first else None


async def _top(built: Components, task: Task) -> Task:
    while task.parent_id is not None:
        task = await built.tasks.get(task.parent_id)
    return task


async def _plan_context(built: Components, root_id: UUID, *, focus: UUID | None) -> dict[str, Any]:
    tree = await built.tasks.tree(root_id)
    graph = await built.tasks.dependencies(root_id)
    by_id = {task.id: task for task in graph.tasks}
    edges = {task.id: tuple(d for d in task.depends_on if d in by_id) for task in graph.tasks}
    return {
        "tree": tree,
        "graph": graph,
        "by_id": by_id,
        "layout": layout(graph.order, edges, graph.critical.path),
        "critical": set(graph.critical.path),
        "blocked": graph.blocked,
        "focus": focus,
    }
