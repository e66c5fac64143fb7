"""sse_starlette_broadcaster — the off-the-shelf way: encode/broadcaster + sse-starlette.

* broadcaster.Broadcast(BROADCAST_URL): 'memory://' (default) or 'redis://...'
  (one shared pub/sub connection per process; per-subscriber unbounded queues).
* SSE: sse_starlette.EventSourceResponse over `async with broadcast.subscribe()`
  (its default ping every 15 s, its disconnect watcher), as the READMEs show.
* WebSocket: plain Starlette/FastAPI websocket, anyio task group with a
  receiver and one `async with broadcast.subscribe()` sender per subscribed
  channel (the broadcaster README chat-room pattern), ping frame every 30 s.

The published message is encoded once into the WS frame text; the WS sender
forwards it as-is, the SSE sender decodes it and re-encodes `data` per
subscriber (what a user does to get the id, event and data fields from one message).

Run: JWT_SECRET=... [BROADCAST=redis REDIS_URL=redis://127.0.0.1:6379/0] \
     uvicorn peers.sse_starlette_broadcaster:app --port 8000
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import jwt
from broadcaster import Broadcast
from fastapi import FastAPI, Header, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

JWT_SECRET = os.environ["JWT_SECRET"]
BROADCAST_URL = os.environ.get("BROADCAST_URL") or (
    os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    if os.environ.get("BROADCAST") == "redis"
    else "memory://"
)
HEARTBEAT_INTERVAL = float(os.environ.get("HEARTBEAT_INTERVAL", "30"))

broadcast = Broadcast(BROADCAST_URL)
_subscribe_lock = asyncio.Lock()


@asynccontextmanager
async def subscribe(channel: str):
    """broadcast.subscribe(), serialised while entering.

    broadcaster 0.3.1: when several clients subscribe to a channel nobody listens to yet, each one
    awaits backend.subscribe() and then *assigns* _subscribers[channel] = {its queue}, dropping the
    queues registered meanwhile; with the Redis backend (which awaits I/O there) most of a burst of
    new subscribers silently never receive anything. The memory backend never yields there, so it
    is not affected."""
    async with AsyncExitStack() as stack:
        async with _subscribe_lock:
            subscriber = await stack.enter_async_context(broadcast.subscribe(channel=channel))
        yield subscriber


@asynccontextmanager
async def lifespan(app: FastAPI):
    await broadcast.connect()
    async with AsyncExitStack() as stack:
        if BROADCAST_URL.startswith("redis"):
            # Workaround needed with broadcaster 0.3.1 + redis-py 8.x: the backend's listener task runs
            # pubsub.listen() as soon as subscribe() sets its ready flag, i.e. BEFORE redis-py records the
            # subscription, so listen() returns at once, the flag is cleared and no event is ever
            # delivered. Holding one subscription open for the app's lifetime makes every later
            # subscribe() re-arm a listener that stays up.
            await stack.enter_async_context(broadcast.subscribe(channel="__keepalive__"))
        yield
    await broadcast.disconnect()


app = FastAPI(title="sse_starlette_broadcaster", lifespan=lifespan)


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


class PublishBody(BaseModel):
    event: str = "message"
    data: Any = None


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def do_publish(channel: str, event_name: str, data: Any) -> str:
    event_id = uuid.uuid4().hex
    message = json.dumps(
        {"type": "message", "channel": channel, "id": event_id, "event": event_name, "data": data},
        separators=(",", ":"),
    )
    await broadcast.publish(channel=channel, message=message)
    return event_id


@app.post("/channels/{channel}/events", status_code=202)
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
    event_id = await do_publish(channel, body.event, body.data)
    return {"id": event_id, "channel": channel}


@app.get("/channels/{channel}/events")
async def stream(channel: str, token: str | None = Query(None)):
    claims = decode_token(token)
    if not allowed(claims, "subscribe", channel):
        raise HTTPException(status_code=403, detail="not allowed to subscribe here")

    async def event_generator():
        async with subscribe(channel) as subscriber:
            async for event in subscriber:
                msg = json.loads(event.message)
                yield {
                    "id": msg["id"],
                    "event": msg["event"],
                    "data": json.dumps(msg["data"], separators=(",", ":")),
                }

    return EventSourceResponse(event_generator(), headers={"X-Accel-Buffering": "no"})


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, token: str | None = Query(None)):
    await websocket.accept()
    try:
        claims = decode_token(token)
    except HTTPException as e:
        await websocket.close(code=1008, reason=str(e.detail))
        return

    async def sender(channel: str, ref: Any, scope: anyio.CancelScope) -> None:
        with scope:
            async with subscribe(channel) as subscriber:
                await websocket.send_text(
                    json.dumps(
                        {"type": "subscribed", "channel": channel, "recovered": False, "ref": ref}
                    )
                )
                async for event in subscriber:
                    await websocket.send_text(event.message)

    async def pinger() -> None:
        while True:
            await anyio.sleep(HEARTBEAT_INTERVAL)
            await websocket.send_text('{"type":"ping"}')

    async with anyio.create_task_group() as tg:

        async def receiver() -> None:
            scopes: dict[str, anyio.CancelScope] = {}
            try:
                async for text in websocket.iter_text():
                    msg = json.loads(text)
                    kind, ref, channel = msg.get("type"), msg.get("ref"), msg.get("channel", "")
                    if kind == "subscribe":
                        if not allowed(claims, "subscribe", channel):
                            await websocket.send_text(
                                json.dumps({"type": "error", "code": "forbidden", "ref": ref})
                            )
                            continue
                        scopes[channel] = anyio.CancelScope()
                        tg.start_soon(sender, channel, ref, scopes[channel])
                    elif kind == "unsubscribe":
                        if channel in scopes:
                            scopes.pop(channel).cancel()
                        await websocket.send_text(
                            json.dumps({"type": "unsubscribed", "channel": channel, "ref": ref})
                        )
                    elif kind == "publish":
                        if not allowed(claims, "publish", channel):
                            await websocket.send_text(
                                json.dumps({"type": "error", "code": "forbidden", "ref": ref})
                            )
                            continue
                        eid = await do_publish(
                            channel, msg.get("event", "message"), msg.get("data")
                        )
                        await websocket.send_text(
                            json.dumps(
                                {"type": "published", "channel": channel, "id": eid, "ref": ref}
                            )
                        )
                    elif kind == "pong":
                        pass
            except WebSocketDisconnect:
                pass
            tg.cancel_scope.cancel()

        tg.start_soon(receiver)
        tg.start_soon(pinger)
