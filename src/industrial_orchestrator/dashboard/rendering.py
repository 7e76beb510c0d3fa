"""The Jinja2 environment of the pages, with the filters their templates use.

Every page is a set of named regions; a region is its own template, so the same file
renders it inside the page and alone, when the page's script asks for it again after a
live event (``?fragment=<region>``). One copy of the markup, server-rendered.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..domain.money import format_usd
from ..domain.operator_tokens import Role
from ..domain.sessions.states import STATE_TABLE, SessionState
from ..executors.opencode.model_setting import model_setting
from .graph_layout import NODE_HEIGHT, NODE_WIDTH

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Pages load only our own files: no inline script, no inline style, no other origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def short_id(value: object) -> str:
    return str(value)[:8]


def clock(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def span(seconds: float | None) -> str:
    """``3h 04m 05s``-style duration."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def bounded(value: float | None) -> float:
    """A fraction clipped to 0..1, for gauges."""
    return 0.0 if value is None else min(max(value, 0.0), 1.0)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.filters.update(
        short=short_id, clock=clock, span=span, percent=percent, bounded=bounded, usd=format_usd
    )
    env.globals["states"] = STATE_TABLE
    env.globals["state_names"] = [state.value for state in SessionState]
    env.globals["node_width"] = NODE_WIDTH
    env.globals["node_height"] = NODE_HEIGHT
    return templates


templates = _templates()


def _no_model(request: Request) -> bool:
    """Internal agents run here with no model named: the banner says which setting to set."""
    components = getattr(request.app.state, "components", None)
    if components is None:
        return False
    setting = model_setting(components.settings)
    return setting.enabled and setting.configured is False


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    regions: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    """The whole page, or only the region named by ``?fragment=``."""
    operator = getattr(request.state, "operator", None)
    # Without authentication everyone may act; with it, operators may and viewers may not.
    context.setdefault("may_act", operator is None or operator.role == Role.OPERATOR)
    context.setdefault("no_model", _no_model(request))
    fragment = request.query_params.get("fragment")
    if fragment is not None:
        if fragment not in regions:
            return HTMLResponse(f"no region {fragment!r} on this page", status_code=404)
        template = regions[fragment]
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
