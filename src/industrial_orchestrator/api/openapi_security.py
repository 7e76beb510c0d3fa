"""The OpenAPI document tells what authentication and rate limiting answer: the operator
token scheme, and the 401, 403 and 429 responses of every route they guard (answered by
middleware, so FastAPI cannot see them on its own)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .operator_auth import EAP_PREFIX, is_open

SCHEME = "operatorToken"
ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
CHANGES = {"post", "put", "patch", "delete"}


def document_operator_auth(app: FastAPI) -> None:
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = plain()
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An operator token (`orchestrator token create`), asked for when "
            "the server binds a non-loopback address or AUTH_REQUIRED is true",
        }
        for path, operations in schema["paths"].items():
            if is_open(path) or path.startswith(EAP_PREFIX):
                continue
            for method, operation in operations.items():
                operation.setdefault("security", [{SCHEME: []}])
                responses = operation.setdefault("responses", {})
                responses.setdefault(
                    "401",
                    {
                        "description": "No operator token, or one unknown or revoked",
                        "content": ERROR,
                    },
                )
                responses.setdefault(
                    "403",
                    {
                        "description": "A viewer's token asking for a change, or a "
                        "dashboard change without its CSRF token",
                        "content": ERROR,
                    },
                )
                if method in CHANGES:
                    responses.setdefault(
                        "429",
                        {
                            "description": "More changes than RATE_LIMIT_PER_MINUTE",
                            "headers": {
                                "Retry-After": {
                                    "description": "Seconds until a change is allowed again",
                                    "schema": {"type": "integer"},
                                }
                            },
                            "content": ERROR,
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
