"""URL layout and path parameters shared by the routers."""

from typing import Annotated
from uuid import UUID

from fastapi import Path

API_PREFIX = "/api/v1"

SessionId = Annotated[UUID, Path(description="The session's id (a UUID)")]
TaskId = Annotated[UUID, Path(description="The task's id (a UUID)")]
