"""`WS /ws`: the handshake rules (origin, token, admission), then one connection.

Auth failures are signalled after accepting, with close code 1008 and a reason:
a refused handshake reaches a browser as a bare 1006, which it can't tell from a
network fault, so it would retry forever. Only a foreign `Origin` is refused
before accept (HTTP 403), as browsers expect of cross-site requests.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket

from ..asgi import hand_off
from ..auth import AuthError, bearer_token
from ..connections import Refusal
from ..service import service_of
from ..settings import Settings
from . import ws_asyncapi
from .ws_connection import (
    POLICY_VIOLATION,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    WebSocketConnection,
    close_quietly,
)

NAME = WebSocketConnection.transport
router = APIRouter()
router.include_router(ws_asyncapi.router)  # GET /asyncapi.json describes this endpoint


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    """Accept, authenticate and admit a client, then hand its connection off."""
    service = service_of(websocket)
    if not origin_allowed(service.settings, websocket.headers.get("origin")):
        await refuse(websocket, 403, "origin not allowed")
        return
    await websocket.accept()
    token = bearer_token(
        websocket.headers.get("authorization"), websocket.query_params.get("token")
    )
    try:
        principal = await service.verifier.verify_async(token)
    except AuthError as exc:
        await close_quietly(websocket, POLICY_VIOLATION, str(exc))
        return
    connection = WebSocketConnection(service, principal)
    refusal = service.connections.admit(connection)
    if refusal is not None:
        code = SERVICE_RESTART if refusal is Refusal.SHUTTING_DOWN else TRY_AGAIN_LATER
        await close_quietly(websocket, code, refusal.value)
        return
    # The socket's own `receive`/`send`: inside the middleware they keep the
    # connection state that Starlette checks, as any WebSocket route's would.
    await hand_off(websocket.scope, websocket.receive, websocket.send, connection)


def origin_allowed(settings: Settings, origin: str | None) -> bool:
    """Whether a handshake from `origin` may proceed (`None`: not a browser, allowed)."""
    if origin is None or settings.allows_any_origin:
        return True
    wanted = origin.rstrip("/").lower()
    return any(wanted == allowed.rstrip("/").lower() for allowed in settings.allowed_origins)


async def refuse(websocket: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP error, before accepting it."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        # Without the denial-response extension, servers answer a pre-accept close with 403.
        await websocket.close()
