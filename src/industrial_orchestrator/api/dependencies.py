"""``Depends`` aliases: the one place the API reaches into the composition root."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..bootstrap import Components
from ..services.sessions import SessionService
from .metrics import Metrics


def components(request: Request) -> Components:
    built: Components = request.app.state.components
    return built


def session_service(request: Request) -> SessionService:
    return components(request).sessions


def metrics(request: Request) -> Metrics:
    registry: Metrics = request.app.state.metrics
    return registry


AppComponents = Annotated[Components, Depends(components)]
Sessions = Annotated[SessionService, Depends(session_service)]
AppMetrics = Annotated[Metrics, Depends(metrics)]
