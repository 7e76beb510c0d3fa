"""URL layout and path parameters shared by the routers."""

from typing import Annotated
from uuid import UUID

from fastapi import Path

API_PREFIX = "/api/v1"
# Event ids and sequence numbers are 64-bit integers in the database: a cursor beyond
# that is refused (422) rather than failing in the driver.
MAX_CURSOR = 2**63 - 1

SessionId = Annotated[UUID, Path(description="The session's id (a UUID)")]
TaskId = Annotated[UUID, Path(description="The task's id (a UUID)")]
