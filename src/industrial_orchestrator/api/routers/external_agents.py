"""The External Agent Protocol (user guide §6): agents outside the orchestrator register,
beat, pull leased tasks and report results over JSON/HTTP.

Every call after registration carries ``Authorization: Bearer <auth_token>`` and
``X-Agent-ID``; an agent can only ever act as itself, and only on the tasks leased to
it for their current attempt.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ...domain.agents.agent import Agent, AgentKind, NewAgent
from ...domain.errors import Forbidden, InvalidInput, NotFound, OrchestratorError, Unauthorized
from ...domain.events import LogStream
from ...domain.tasks.artifacts import decode_content, new_artifact
from ...domain.tasks.attempts import AttemptOutcome
from ...services.lease_endings import AgentNotRegistered
from ...services.task_leases import Assignment, Report
from ..agent_tokens import AgentTokens
from ..dependencies import Agents, AppComponents, Leases
from ..paths import API_PREFIX
from ..schemas.common import error_responses
from ..schemas.events import AgentLogAppend, LogAppended, check_log_size
from ..schemas.external_agents import (
    SUPPORTED_PROTOCOL_VERSIONS,
    ArtifactRead,
    ExternalHeartbeat,
    ExternalRegister,
    HeartbeatAck,
    LeaseRead,
    Registered,
    TaskAssignment,
    TaskResultAck,
    TaskResultIn,
)

router = APIRouter(prefix=f"{API_PREFIX}/agents/external", tags=["external agents (EAP)"])

_bearer = HTTPBearer(auto_error=False, description="The agent's auth_token")
_POLL_SLICE_SECONDS = 1.0
_COALESCE_SECONDS = 0.05


class UnsupportedProtocol(OrchestratorError):
    code = "unsupported_protocol_version"


class AgentRemoved(Unauthorized):
    """A valid token of an agent that was deregistered: unlike a token the server cannot
    verify (a new SECRET_KEY, expired), registering again would undo the removal, so it
    has a code of its own that tells a worker to stop."""

    code = "agent_removed"


async def agent_tokens(request: Request) -> AgentTokens:
    tokens: AgentTokens = request.app.state.agent_tokens
    return tokens


Tokens = Annotated[AgentTokens, Depends(agent_tokens)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def token_holder(
    agent_id: Annotated[UUID, Path(description="The agent's id, as registered")],
    credentials: Credentials,
    tokens: Tokens,
    x_agent_id: Annotated[str | None, Header(alias="X-Agent-ID")] = None,
) -> UUID:
    """The id of the agent the request comes from, which must be the agent in the path,
    from its token alone: whether it is still registered is for the caller to find."""
    if credentials is None:
        raise Unauthorized("Send the agent's auth_token as 'Authorization: Bearer <token>'")
    holder = tokens.verify(credentials.credentials)
    if x_agent_id is None or x_agent_id.strip().lower() != str(holder):
        raise Unauthorized("X-Agent-ID is missing or does not match the token")
    if agent_id != holder:
        raise Forbidden(
            f"This token belongs to agent {holder}; it cannot act for agent {agent_id}",
            {"agent_id": str(agent_id)},
        )
    return holder


CallerId = Annotated[UUID, Depends(token_holder)]


def _removed() -> AgentRemoved:
    return AgentRemoved(
        "The agent is no longer registered (its tokens are revoked); register again"
    )


async def authenticated_agent(holder: CallerId, agents: Agents) -> Agent:
    """The record of the agent the request comes from (``token_holder``)."""
    try:
        return await agents.get(holder)
    except NotFound:
        raise _removed() from None


Caller = Annotated[Agent, Depends(authenticated_agent)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=Registered,
    summary="Register an external agent",
    responses=error_responses(400, 401, 409, 422),
)
async def register_external(
    body: ExternalRegister,
    agents: Agents,
    tokens: Tokens,
    components: AppComponents,
    credentials: Credentials,
) -> Registered:
    """Answers the agent's id and its `auth_token` (a JWT, valid for
    `ACCESS_TOKEN_EXPIRE_MINUTES`; every heartbeat answers a fresh one). When
    `AGENT_REGISTRATION_TOKEN` is set, the request must carry it as a bearer token.

    A name an external agent already has resumes that agent: the same id, its history
    and leases kept (how an agent whose token is refused after a restart comes back).
    The name of one of the orchestrator's own agents is a 409."""
    required = components.settings.agent_registration_token
    if required is not None:
        presented = credentials.credentials if credentials else ""
        if not secrets.compare_digest(presented.encode(), required.get_secret_value().encode()):
            raise Unauthorized(
                "Registration needs 'Authorization: Bearer <AGENT_REGISTRATION_TOKEN>'"
            )
    if body.protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
        raise UnsupportedProtocol(
            f"protocol_version {body.protocol_version!r} is not supported; this orchestrator "
            f"speaks {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}",
            {"supported": list(SUPPORTED_PROTOCOL_VERSIONS)},
        )
    metadata = {
        **body.metadata,
        "protocol_version": body.protocol_version,
        "agent_version": body.version,
        "endpoint_url": body.endpoint_url,
    }
    agent = await agents.rejoin(
        NewAgent(
            name=body.name,
            agent_type=body.agent_type,
            capabilities=body.capabilities,
            kind=AgentKind.EXTERNAL,
            max_concurrent_tasks=body.max_concurrent_tasks,
            metadata=metadata,
        )
    )
    issued = tokens.issue(agent.id)
    return Registered(
        agent_id=agent.id,
        auth_token=issued.token,
        token_expires_at=issued.expires_at,
        heartbeat_interval_seconds=components.settings.agent_heartbeat_seconds,
    )


@router.post(
    "/{agent_id}/heartbeat",
    response_model=HeartbeatAck,
    summary="Report liveness; renews the agent's leases and token",
    responses=error_responses(401, 403, 409, 422),
)
async def external_heartbeat(
    body: ExternalHeartbeat,
    caller: Caller,
    agents: Agents,
    leases: Leases,
    tokens: Tokens,
    components: AppComponents,
) -> HeartbeatAck:
    """Every lease the agent holds (or those of `task_ids`) is extended by
    `TASK_LEASE_SECONDS`. With `task_ids`, a lease the agent has had for 30 s without
    listing it is let go, its task back in the queue: the answer to the pull that leased
    it never reached the agent. The answer carries a fresh `auth_token`; the old one stays
    valid until it expires."""
    metrics = dict(body.metrics)
    if body.tasks_in_progress is not None:
        metrics["reported_tasks_in_progress"] = body.tasks_in_progress
    if body.timestamp is not None:
        metrics["reported_at"] = body.timestamp.isoformat()
    beat = await agents.heartbeat(
        caller.id,
        status=body.status,
        current_load=body.current_load,
        metrics=metrics,
        working_on=body.task_ids,
    )
    if body.task_ids is not None:
        await leases.let_go_unknown(caller.id, body.task_ids)
    issued = tokens.issue(caller.id)
    return HeartbeatAck(
        agent_id=caller.id,
        status=beat.agent.status,
        auth_token=issued.token,
        token_expires_at=issued.expires_at,
        heartbeat_interval_seconds=components.settings.agent_heartbeat_seconds,
        leases=[
            LeaseRead(
                task_id=lease.task_id, attempt=lease.attempt, lease_expires_at=lease.expires_at
            )
            for lease in beat.leases
        ],
        abort=beat.abort,
    )


@router.post(
    "/{agent_id}/tasks/next",
    response_model=TaskAssignment,
    summary="Pull the next task (long-poll)",
    responses={
        204: {"description": "No task for this agent within wait_seconds"},
        **error_responses(401, 403, 409),
    },
)
async def next_task(
    request: Request,
    caller: CallerId,
    leases: Leases,
    components: AppComponents,
    wait_seconds: Annotated[
        float, Query(ge=0, le=60, description="How long to wait for a task before 204")
    ] = 20.0,
) -> TaskAssignment | Response:
    """Leases the most urgent READY task whose required capabilities the agent holds
    (tasks of RUNNING sessions by priority, then tasks outside sessions; oldest first).
    Two agents never get the same task. A task of a type at which the agent's record is
    clearly worse (25 points) than that of an idle, live agent able to take it is left to
    that agent for up to 30 s after it became READY (learned routing). 409
    `agent_not_accepting` when the agent is offline, busy or at its `max_concurrent_tasks`."""
    deadline = time.monotonic() + wait_seconds
    # Each look reads the agent's record in its own statement (it may have gone busy or
    # offline during a wait): the authentication does not read it.
    async with components.bus.subscribe(work_only=True) as wakeup:
        while True:
            if await request.is_disconnected():
                return Response(status_code=status.HTTP_204_NO_CONTENT)
            try:
                assignment = await leases.claim(caller)
            except AgentNotRegistered:
                raise _removed() from None
            if assignment is not None:
                return _assignment(assignment, components.settings.task_timeout_seconds)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(status_code=status.HTTP_204_NO_CONTENT)
            # Woken by a commit that may offer work (domain.work_news), else re-checked
            # often enough that a wake-up lost between replicas costs little. A burst
            # of commits is answered with one look, not one per commit.
            if await wakeup.wait(min(remaining, _POLL_SLICE_SECONDS)):
                await asyncio.sleep(min(_COALESCE_SECONDS, max(0.0, remaining)))


@router.post(
    "/{agent_id}/tasks/{task_id}/result",
    response_model=TaskResultAck,
    summary="Report the result of a leased task",
    responses=error_responses(401, 403, 404, 409, 413, 422),
)
async def task_result(
    task_id: Annotated[UUID, Path(description="The task the result is for")],
    body: TaskResultIn,
    caller: CallerId,
    leases: Leases,
) -> TaskResultAck:
    """Accepted only from the agent holding the task's current lease, for the current
    attempt (send the `attempt` you were given): anything else is 409 `lease_lost` and
    changes nothing. Artifacts are checked (relative paths inside the workspace, size
    and count limits: 422/413), stored with their type and SHA-256, and written into the
    workspace when the task completed."""
    if body.task_id != task_id:
        raise InvalidInput(
            f"The body's task_id {body.task_id} is not the task in the URL ({task_id})",
            {"field": "task_id"},
        )
    artifacts = [
        new_artifact(a.path, decode_content(a.content, a.encoding), a.mime_type)
        for a in body.artifacts
    ]
    # The agent's record is read in the result's own first statement, not by a read of
    # its own to authenticate: a round trip fewer on every result.
    try:
        recorded = await leases.report(
            caller,
            Report(
                task_id=task_id,
                outcome=AttemptOutcome(body.status),
                attempt=body.attempt,
                artifacts=artifacts,
                output=body.output_data,
                error=body.error,
                execution_time_ms=body.execution_time_ms,
                tokens_used=body.tokens_used,
                cost_usd=body.cost_usd,
            ),
        )
    except AgentNotRegistered:
        raise _removed() from None
    return TaskResultAck(
        task_id=task_id,
        attempt=recorded.attempt.attempt,
        task_status=recorded.task.status.value,
        artifacts=[ArtifactRead.of(a) for a in recorded.artifacts],
        written=recorded.written,
    )


@router.post(
    "/{agent_id}/tasks/{task_id}/logs",
    status_code=status.HTTP_201_CREATED,
    response_model=LogAppended,
    summary="Stream output of a leased task to its session's live terminal",
    responses=error_responses(401, 403, 404, 409, 413, 422),
)
async def task_log(
    task_id: Annotated[UUID, Path(description="The leased task the output is from")],
    body: AgentLogAppend,
    caller: Caller,
    leases: Leases,
) -> LogAppended:
    """Only for a task this agent holds (409 `lease_lost` otherwise); the text becomes
    `session.log` events of the task's session (at most 256 KiB per request)."""
    check_log_size(body.text)
    stream = LogStream(body.stream)
    return LogAppended(events=await leases.log(caller.id, task_id, stream, body.text))


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Leave: deregister this agent",
    responses=error_responses(401, 403),
)
async def leave(caller: Caller, agents: Agents) -> Response:
    """The tasks the agent holds go back to the queue; its tokens stop working."""
    await agents.deregister(caller.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _assignment(assignment: Assignment, timeout_seconds: int) -> TaskAssignment:
    task = assignment.task
    return TaskAssignment(
        task_id=task.id,
        session_id=task.session_id,
        task_type=task.task_type,
        title=task.title,
        context={
            "title": task.title,
            "workspace": str(assignment.workspace),
            "parent_id": str(task.parent_id) if task.parent_id else None,
            "dependencies": [
                {"task_id": str(dep.id), "title": dep.title, "result_summary": dep.result_summary}
                for dep in assignment.finished_dependencies
            ],
        },
        input_data=task.description or task.title,
        requirements=list(task.required_capabilities),
        timeout_seconds=timeout_seconds,
        attempt=assignment.attempt.attempt,
        lease_expires_at=assignment.attempt.expires_at,
    )
