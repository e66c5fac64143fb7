"""`GET /asyncapi.json`: the WebSocket protocol as an AsyncAPI 3 document.

Built from the frame models (`ws_frames` for the client's, `ws_server_frames`
for the server's), the error codes and the close codes the connection uses, so
that it can't drift from what the server does. It describes the service: frames
a client sends are operations the service `receive`s (with their replies),
`message` and `ping` are frames it `send`s on its own.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal, get_args

from fastapi import APIRouter, Request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import PROJECT_NAME
from .ws_connection import (
    GOING_AWAY,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
)
from .ws_frames import AnyFrame, ErrorCode
from .ws_server_frames import (
    AnyServerFrame,
    Error,
    Message,
    Published,
    Refreshed,
    Subscribed,
    Unsubscribed,
)

ASYNCAPI_VERSION = "3.1.0"
# The version of the protocol described, not of the service.
PROTOCOL_VERSION = "1.0.0"
CHANNEL = "ws"
ADDRESS = "/ws"

CLIENT_FRAMES: tuple[type[BaseModel], ...] = get_args(AnyFrame)
SERVER_FRAMES: tuple[type[BaseModel], ...] = get_args(AnyServerFrame)

# What the server answers each client frame with (besides an `error`): a
# subscribe first replays what was missed as `message` frames.
REPLIES: dict[str, tuple[type[BaseModel], ...]] = {
    "subscribe": (Message, Subscribed),
    "unsubscribe": (Unsubscribed,),
    "publish": (Published,),
    "pong": (),
    "refresh": (Refreshed,),
}
# Frames the server sends unasked.
UNSOLICITED = ("message", "ping")

ERROR_CODES: dict[ErrorCode, str] = {
    "bad_request": "Invalid JSON, not an object, a missing or invalid field (`type` "
    "included), or a bad channel or event name.",
    "unknown_type": "A string `type` this server doesn't know.",
    "forbidden": "The token lacks the permission, or a `refresh` token was refused.",
    "rate_limited": "The frame was dropped: too many frames per second.",
    "unavailable": "The broadcaster can't be reached; try again shortly.",
}

CLOSE_CODES: dict[int, str] = {
    GOING_AWAY: "No client frame for 2 x `HEARTBEAT_INTERVAL`: the connection was idle.",
    POLICY_VIOLATION: "Missing, invalid or expired token (reason says which), or flooding "
    "(reason `rate limited`). Don't retry with the same token.",
    MESSAGE_TOO_BIG: "A frame larger than `MAX_MESSAGE_BYTES`.",
    INTERNAL_ERROR: "A bug in the server.",
    SERVICE_RESTART: "The server is shutting down: reconnect shortly (resume with the last id).",
    TRY_AGAIN_LATER: "The connection fell too far behind (slow consumer), or the server is at "
    "`MAX_CONNECTIONS`: reconnect later (resume with the last id).",
}


def frame_type(model: type[BaseModel]) -> str:
    """The `type` a frame model stands for."""
    kind: str = get_args(model.model_fields["type"].annotation)[0]
    return kind


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(parts)}


def _message_ref(kind: str) -> dict[str, str]:
    return _ref("channels", CHANNEL, "messages", kind)


def _schemas() -> dict[str, Any]:
    Mode = Literal["validation", "serialization"]
    models: list[tuple[type[BaseModel], Mode]] = [(m, "validation") for m in CLIENT_FRAMES]
    models += [(m, "serialization") for m in SERVER_FRAMES]
    _, schema = models_json_schema(models, ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema["$defs"]
    return definitions


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for model in CLIENT_FRAMES + SERVER_FRAMES:
        kind = frame_type(model)
        messages[kind] = {
            "name": kind,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "payload": _ref("components", "schemas", model.__name__),
        }
    codes = "\n".join(f"- `{code}`: {text}" for code, text in ERROR_CODES.items())
    messages["error"]["description"] = f"Error codes:\n\n{codes}"
    return messages


def _operations() -> dict[str, Any]:
    channel = _ref("channels", CHANNEL)
    operations: dict[str, Any] = {}
    for model in CLIENT_FRAMES:
        kind = frame_type(model)
        replies = [frame_type(reply) for reply in REPLIES[kind]] + [frame_type(Error)]
        operations[f"receive_{kind}"] = {
            "action": "receive",
            "channel": channel,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "messages": [_message_ref(kind)],
            "reply": {"channel": channel, "messages": [_message_ref(r) for r in replies]},
        }
    for kind in UNSOLICITED:
        operations[f"send_{kind}"] = {
            "action": "send",
            "channel": channel,
            "messages": [_message_ref(kind)],
        }
    return operations


def _channel() -> dict[str, Any]:
    closes = "\n".join(f"- **{code}**: {text}" for code, text in CLOSE_CODES.items())
    return {
        "address": ADDRESS,
        "title": "WebSocket",
        "description": (
            "Text frames carrying JSON objects with a `type`. Any client frame may "
            "carry a `ref` (string); the server's reply to it carries the same `ref`. "
            "Invalid frames are answered with an `error` frame and the connection "
            f"stays open.\n\nClose codes:\n\n{closes}"
        ),
        "messages": {
            frame_type(model): _ref("components", "messages", frame_type(model))
            for model in CLIENT_FRAMES + SERVER_FRAMES
        },
        "bindings": {
            "ws": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "properties": {
                        "token": {
                            "type": "string",
                            "description": "The JWT, for browsers (they can't set headers "
                            "on a WebSocket).",
                        }
                    },
                },
                "headers": {
                    "type": "object",
                    "properties": {
                        "Authorization": {"type": "string", "description": "`Bearer <jwt>`."}
                    },
                },
                "bindingVersion": "0.1.0",
            }
        },
        "x-close-codes": [
            {"code": code, "description": text} for code, text in CLOSE_CODES.items()
        ],
    }


@cache
def _document_body() -> dict[str, Any]:
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"{PROJECT_NAME} WebSocket protocol",
            "version": PROTOCOL_VERSION,
            "description": (
                "The `WS /ws` endpoint. A missing, invalid or expired token is "
                "answered by closing with 1008 and a reason right after the handshake."
            ),
        },
        "defaultContentType": "application/json",
        "channels": {CHANNEL: _channel()},
        "operations": _operations(),
        "components": {
            "schemas": _schemas(),
            "messages": _messages(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "token": {"type": "httpApiKey", "name": "token", "in": "query"},
            },
        },
    }


def asyncapi_document(host: str, secure: bool) -> dict[str, Any]:
    """The document, with this service at `host` as its server."""
    server = {
        "host": host,
        "protocol": "wss" if secure else "ws",
        "description": "This service.",
        "security": [
            _ref("components", "securitySchemes", "bearer"),
            _ref("components", "securitySchemes", "token"),
        ],
    }
    return {**_document_body(), "servers": {"service": server}}


router = APIRouter()


@router.get("/asyncapi.json")
async def asyncapi(request: Request) -> dict[str, Any]:
    """The AsyncAPI 3 document of `WS /ws`: every frame, error code and close code."""
    return asyncapi_document(request.url.netloc, request.url.scheme == "https")
