"""Shapes shared by every resource."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """The one error shape of the API."""

    error: str = Field(description="Machine-readable error code", examples=["illegal_transition"])
    message: str = Field(description="What went wrong and what to do about it")
    details: Any = Field(None, description="Structured facts about the error")


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error and not a no-op."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting that a route may answer with the error shape."""
    meanings = {
        400: "The request cannot be served as sent",
        401: "Missing, invalid, expired or revoked credentials",
        403: "The credentials do not allow this",
        404: "The resource does not exist",
        409: "Conflict with the resource's current state or version",
        413: "The request body is too large",
        422: "The request is invalid",
        503: "Not ready",
    }
    return {code: {"model": ErrorBody, "description": meanings[code]} for code in codes}
