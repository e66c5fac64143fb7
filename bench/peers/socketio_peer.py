"""socketio_peer — python-socketio's ASGI server, as its documentation shows (WebSocket only).

* `socketio.AsyncServer(async_mode="asgi")` mounted with `socketio.ASGIApp` in
  front of a FastAPI app that serves the publish route and /healthz.
* A client connects with its token in the Socket.IO `auth` payload, emits
  `subscribe` with a channel name and is put in that room; the server answers
  `subscribed`. A publish is one `sio.emit("message", data, room=channel)`.
* BROADCAST=redis: `socketio.AsyncRedisManager(REDIS_URL)`, so an emit goes
  through Redis pub/sub to every worker (python-socketio's own multi-node setup).

Socket.IO is a protocol of its own (Engine.IO framing, its own heartbeats and
reconnection); the driver speaks the few packets a subscriber needs. Neither
resume after a reconnect nor dropping a slow client is part of it.

Run: JWT_SECRET=... [BROADCAST=redis REDIS_URL=...] uvicorn peers.socketio_peer:app --port 8000
"""

from __future__ import annotations

import fnmatch
import os
import uuid
from typing import Any

import jwt
import socketio
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

JWT_SECRET = os.environ["JWT_SECRET"]
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

manager = socketio.AsyncRedisManager(REDIS_URL) if os.environ.get("BROADCAST") == "redis" else None
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])
api = FastAPI(title="socketio_peer")


def decode_token(token: str | None) -> dict[str, Any]:
    if not token:
        raise HTTPException(status_code=401, detail="missing token")
    try:
        return jwt.decode(
            token, JWT_SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as e:
        raise HTTPException(status_code=401, detail=f"invalid token: {e}") from e


def allowed(claims: dict[str, Any], perm: str, channel: str) -> bool:
    return any(fnmatch.fnmatchcase(channel, p) for p in claims.get(perm, []))


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
    try:
        claims = decode_token((auth or {}).get("token"))
    except HTTPException as e:
        raise socketio.exceptions.ConnectionRefusedError(e.detail) from e
    await sio.save_session(sid, {"claims": claims})


@sio.event
async def subscribe(sid: str, channel: str) -> None:
    claims = (await sio.get_session(sid))["claims"]
    if not allowed(claims, "subscribe", channel):
        await sio.emit("error", {"code": "forbidden", "channel": channel}, to=sid)
        return
    await sio.enter_room(sid, channel)
    await sio.emit("subscribed", channel, to=sid)


class PublishBody(BaseModel):
    event: str = "message"
    data: Any = None


@api.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@api.post("/channels/{channel}/events", status_code=202)
async def publish(
    channel: str, body: PublishBody, authorization: str | None = Header(None)
) -> dict[str, str]:
    token = (
        authorization.split(" ", 1)[1]
        if authorization and authorization.startswith("Bearer ")
        else None
    )
    claims = decode_token(token)
    if not allowed(claims, "publish", channel):
        raise HTTPException(status_code=403, detail="not allowed to publish here")
    event_id = uuid.uuid4().hex
    await sio.emit("message", body.data, room=channel)
    return {"id": event_id, "channel": channel}


app = socketio.ASGIApp(sio, other_asgi_app=api)
