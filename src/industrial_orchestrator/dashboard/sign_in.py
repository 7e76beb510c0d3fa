"""Signing in to the dashboard with an operator token, and out again.

The token goes into an HttpOnly, SameSite=Strict cookie: scripts cannot read it and no
other site's request carries it. Each request checks it against the database, so a
revoked token signs its holder out at once.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..bootstrap import Components
from ..domain.operator_tokens import COOKIE_NAME, csrf_token, same_token
from .rendering import page

router = APIRouter(include_in_schema=False)

COOKIE_SECONDS = 12 * 3600
MAX_FORM_BYTES = 4096


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    fields = parse_qs(body.decode(errors="replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items() if values}


@router.get("/login", response_class=HTMLResponse)
async def sign_in_page(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, "login.html", {"next": safe_next(next), "problem": None}, regions={})


@router.post("/login", response_model=None)
async def sign_in(request: Request) -> Response:
    built: Components = request.app.state.components
    form = await _form(request)
    target = safe_next(form.get("next"))
    token = await built.operator_tokens.authenticate(form.get("token", "").strip())
    if token is None:
        return page(
            request,
            "login.html",
            {"next": target, "problem": "That token is unknown or revoked."},
            regions={},
            status_code=401,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        form["token"].strip(),
        max_age=COOKIE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", response_model=None)
async def sign_out(request: Request) -> Response:
    built: Components = request.app.state.components
    cookie = request.cookies.get(COOKIE_NAME, "")
    form = await _form(request)
    secret = built.settings.secret_key.get_secret_value()
    if cookie and not same_token(csrf_token(secret, cookie), form.get("csrf", "")):
        return HTMLResponse("sign-out refused: reload the page and try again", status_code=403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
