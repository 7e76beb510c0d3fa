"""Readable OpenAPI operation ids: ``sessions_create``, ``agents_route``, ``eap_heartbeat``.

FastAPI's default id glues the function name to the path and the method
(``create_session_api_v1_sessions_post``), which generated clients turn into method names.
Ours is the route's group (its first tag; a tag written ``name (ABBR)`` goes by ``abbr``)
and the endpoint function's name without the group's own noun, so ``create_session`` under
``sessions`` is ``sessions_create``. A route may still name its id itself.
"""

from __future__ import annotations

import re
from enum import Enum

from fastapi.routing import APIRoute

_ABBREVIATION = re.compile(r"\(([A-Za-z]+)\)")


def group_of(tag: str) -> str:
    abbreviation = _ABBREVIATION.search(tag)
    if abbreviation:
        return abbreviation.group(1).lower()
    return re.sub(r"\W+", "_", tag.lower()).strip("_")


def readable_operation_id(route: APIRoute) -> str:
    first = route.tags[0] if route.tags else "default"
    tag = str(first.value) if isinstance(first, Enum) else first
    group = group_of(tag)
    nouns = {group.rstrip("s"), *(word.rstrip("s") for word in re.findall(r"\w+", tag.lower()))}
    words = [word for word in route.name.split("_") if word.rstrip("s") not in nouns]
    return "_".join([group, *(words or [route.name])])
