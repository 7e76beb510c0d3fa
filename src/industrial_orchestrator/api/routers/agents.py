"""Agents (user guide §7 "Agent Management"): the registry and capability routing."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response, status

from ...domain.agents.agent import AgentKind, AgentStatus, NewAgent
from ...domain.agents.tiers import Tier
from ...services.agents import AgentFilter
from ..dependencies import Agents
from ..paths import API_PREFIX
from ..schemas.agents import (
    AgentDetail,
    AgentPage,
    AgentRead,
    AgentRegister,
    AgentStatsRead,
    Heartbeat,
    RouteRequest,
    RouteResult,
)
from ..schemas.common import error_responses
from .sessions import Page, PageSize

router = APIRouter(prefix=f"{API_PREFIX}/agents", tags=["agents"])

AgentId = Annotated[UUID, Path(description="The agent's id (a UUID)")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentDetail,
    summary="Register an agent",
    responses=error_responses(409, 422),
)
@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentDetail,
    summary="Register an agent (the user guide's form of POST /agents)",
    responses=error_responses(409, 422),
    operation_id="agents_register_alias",
)
async def register_agent(body: AgentRegister, agents: Agents) -> AgentDetail:
    """A HEALTHY agent, rated COMPETENT until it has finished 10 tasks, with no records
    yet. Names are unique (409); capabilities are case-insensitive."""
    agent = await agents.register(
        NewAgent(
            name=body.name,
            agent_type=body.agent_type,
            capabilities=body.capabilities,
            kind=body.kind,
            max_concurrent_tasks=body.max_concurrent_tasks,
            metadata=body.metadata,
        )
    )
    return AgentDetail.with_records(agent, [])


@router.get("", response_model=AgentPage, summary="List agents", responses=error_responses(422))
async def list_agents(
    agents: Agents,
    capability: Annotated[
        list[str] | None, Query(description="Repeat: agents holding all of them")
    ] = None,
    status_filter: Annotated[list[AgentStatus] | None, Query(alias="status")] = None,
    tier: Annotated[list[Tier] | None, Query()] = None,
    kind: Annotated[list[AgentKind] | None, Query()] = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> AgentPage:
    """Agents by name, filtered by capabilities (all of them), status(es), tier(s) and
    kind(s); one page of them, with the total that match, like every other list."""
    found, total = await agents.search_page(
        AgentFilter(
            capabilities=capability or (),
            statuses=status_filter or (),
            tiers=tier or (),
            kinds=kind or (),
        ),
        offset=(page - 1) * page_size,
        limit=page_size,
    )
    return AgentPage(
        items=[AgentRead.of(agent) for agent in found],
        total=total,
        page=page,
        page_size=page_size,
    )


@router.get("/stats", response_model=AgentStatsRead, summary="Fleet statistics")
async def agent_stats(agents: Agents) -> AgentStatsRead:
    """Counts by status, tier and kind; total and active (not offline); average load."""
    return AgentStatsRead.of(await agents.stats())


@router.post(
    "/route",
    response_model=RouteResult,
    summary="Choose the best agent for some work",
    responses=error_responses(409, 422),
)
async def route(body: RouteRequest, agents: Agents) -> RouteResult:
    """Candidates hold every required capability and are healthy or degraded, not busy,
    offline or at capacity; DEGRADED-tier agents only when nobody else qualifies. Ranked
    by tier, then lowest load, then best success rate, then least recently assigned. With
    a `task_type`, the candidates' records for that type come first (learned routing:
    success rate in 5-point bands, then mean cost, then median duration; a record counts
    from 3 finished attempts, and an agent without one ranks as the average). 409
    `no_agent_available` says which capability or condition nobody meets."""
    decision = await agents.route(
        body.required_capabilities, task_type=body.task_type, exclude=body.exclude
    )
    return RouteResult.of(decision)


@router.get(
    "/{agent_id}",
    response_model=AgentDetail,
    summary="Get an agent, with its record per task type",
    responses=error_responses(404),
)
async def get_agent(agent_id: AgentId, agents: Agents) -> AgentDetail:
    """`records`: per task type, the agent's latest finished attempts (up to 50, within
    30 days): attempts, success rate, median duration and mean cost. Routing uses a
    record once it has 3 attempts."""
    agent, records = await agents.profile(agent_id)
    return AgentDetail.with_records(agent, records)


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Deregister an agent",
    responses=error_responses(404),
)
@router.post(
    "/{agent_id}/deregister",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Deregister an agent (the user guide's form of DELETE /agents/{agent_id})",
    responses=error_responses(404),
    operation_id="agents_deregister_alias",
)
async def deregister_agent(agent_id: AgentId, agents: Agents) -> Response:
    await agents.deregister(agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{agent_id}/heartbeat",
    response_model=AgentRead,
    summary="Report that an agent is alive",
    responses=error_responses(404, 409, 422),
)
async def heartbeat(agent_id: AgentId, agents: Agents, body: Heartbeat | None = None) -> AgentRead:
    """With what the agent says of itself (status, load, tasks in progress). An OFFLINE
    agent that beats again is HEALTHY unless it says otherwise."""
    beat = body or Heartbeat()
    beaten = await agents.heartbeat(
        agent_id,
        status=beat.status,
        current_load=beat.current_load,
        tasks_in_progress=beat.tasks_in_progress,
    )
    return AgentRead.of(beaten.agent)
