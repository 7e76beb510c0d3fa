"""``Depends`` aliases: the one place the API reaches into the composition root.

The providers are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
thread pool, a thread hand-off per request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..bootstrap import Components
from ..services.agents import AgentService
from ..services.contexts import ContextService
from ..services.events import EventLog
from ..services.sessions import SessionService
from ..services.task_leases import TaskLeases
from ..services.tasks import TaskService
from .metrics import Metrics


async def components(request: Request) -> Components:
    built: Components = request.app.state.components
    return built


async def session_service(request: Request) -> SessionService:
    built: Components = request.app.state.components
    return built.sessions


async def event_log(request: Request) -> EventLog:
    built: Components = request.app.state.components
    return built.events


async def task_service(request: Request) -> TaskService:
    built: Components = request.app.state.components
    return built.tasks


async def context_service(request: Request) -> ContextService:
    built: Components = request.app.state.components
    return built.contexts


async def agent_service(request: Request) -> AgentService:
    built: Components = request.app.state.components
    return built.agents


async def task_leases(request: Request) -> TaskLeases:
    built: Components = request.app.state.components
    return built.leases


async def metrics(request: Request) -> Metrics:
    registry: Metrics = request.app.state.metrics
    return registry


AppComponents = Annotated[Components, Depends(components)]
Sessions = Annotated[SessionService, Depends(session_service)]
Events = Annotated[EventLog, Depends(event_log)]
Tasks = Annotated[TaskService, Depends(task_service)]
Contexts = Annotated[ContextService, Depends(context_service)]
Agents = Annotated[AgentService, Depends(agent_service)]
Leases = Annotated[TaskLeases, Depends(task_leases)]
AppMetrics = Annotated[Metrics, Depends(metrics)]
