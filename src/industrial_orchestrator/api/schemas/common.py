"""Shapes shared by every resource, and the one rule every request body obeys: text the
database cannot keep (``domain.storable_text``) is refused here, before anything is stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ...domain.storable_text import describe, find_unstorable, first_unstorable


class ErrorBody(BaseModel):
    """The one error shape of the API."""

    error: str = Field(description="Machine-readable error code", examples=["illegal_transition"])
    message: str = Field(description="What went wrong and what to do about it")
    details: Any = Field(None, description="Structured facts about the error")


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error and not a no-op, and
    text that cannot be stored (a NUL, a lone surrogate) in any value or key, at any
    depth of free-form JSON."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        # On the raw input, before any field is validated: the path is the client's own,
        # and no other error message (an unknown key, an enum's) can echo the bad text.
        problem = find_unstorable(data)
        if problem is None:
            return data
        raise ValidationError.from_exception_data(
            cls.__name__,
            [
                InitErrorDetails(
                    type=PydanticCustomError("unstorable_text", problem.message),
                    loc=problem.path,
                    input=None,
                )
            ],
        )


def storable_text(value: str) -> str:
    """The same rule for a lone string outside a body (e.g. a header that is stored)."""
    char = first_unstorable(value)
    if char is not None:
        raise ValueError(f"contains {describe(char)}, which cannot be stored")
    return value


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
