"""What `/docs` needs beyond what FastAPI reads off the routes.

Routes that read their body or token by hand (to bound the body's size, or to
take the token from a header or the query) are invisible to FastAPI's own
introspection. They declare it here instead, so that `/docs` can show the
request body, and its Authorize button can send a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

BEARER = "bearerAuth"
TOKEN_QUERY = "tokenQuery"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <jwt>`.",
    },
    TOKEN_QUERY: {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The JWT as the `token` query parameter, for clients that can't set headers.",
    },
}

# Either scheme will do: a list of alternatives, each a requirement on its own.
TOKEN_REQUIRED: list[dict[str, list[str]]] = [{BEARER: []}, {TOKEN_QUERY: []}]


def json_request_body(
    model: type[BaseModel],
    example: Any,
    *,
    description: str,
    fields: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route that reads a JSON body shaped like `model` itself.

    `fields` adds to the schema of single fields the rules the route checks by
    hand (and answers with its own status), so that they are documented too.
    """
    schema = model.model_json_schema(mode="validation")
    for name, extra in (fields or {}).items():
        schema["properties"][name].update(extra)
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema, "example": example}},
        },
        "security": TOKEN_REQUIRED,
    }


def install(app: FastAPI) -> None:
    """Make `app.openapi()` add the token schemes that routes name in their `security`."""
    build_schema = app.openapi

    def with_security_schemes() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = build_schema()  # built once, then cached by FastAPI
        if first:
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        return schema

    app.openapi = with_security_schemes  # type: ignore[method-assign]
