"""fastapi_native — what FastAPI's own docs lead to today (FastAPI >= 0.135, memory only).

* SSE: `response_class=EventSourceResponse` on a generator route that yields
  `ServerSentEvent(raw_data=..., id=..., event=...)` (FastAPI encodes each event
  per subscriber and adds its own 15 s keep-alive ping).
* Fan-out: a dict channel -> set of per-subscriber asyncio.Queue (unbounded, as
  the tutorials show); publish puts the message into every queue.
* WebSocket: `@app.websocket` with a receiver loop and one sender task per
  connection draining its queue with `websocket.send_text`.

Run: JWT_SECRET=... uvicorn peers.fastapi_native:app --port 8000
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import uuid
from collections import defaultdict
from typing import Any

import jwt
from fastapi import FastAPI, Header, HTTPException, Query, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

JWT_SECRET = os.environ["JWT_SECRET"]
app = FastAPI(title="fastapi_native")
channels: dict[str, set[asyncio.Queue[tuple[str, str, str]]]] = defaultdict(set)


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


def do_publish(channel: str, event: str, data: Any) -> str:
    event_id = uuid.uuid4().hex
    payload = json.dumps(data, separators=(",", ":"))
    for queue in channels.get(channel, ()):
        queue.put_nowait((event_id, event, payload))
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
    return {"id": do_publish(channel, body.event, body.data), "channel": channel}


@app.get("/channels/{channel}/events", response_class=EventSourceResponse)
async def stream(channel: str, token: str | None = Query(None)):
    claims = decode_token(token)
    if not allowed(claims, "subscribe", channel):
        raise HTTPException(status_code=403, detail="not allowed to subscribe here")
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    channels[channel].add(queue)
    try:
        while True:
            event_id, event, payload = await queue.get()
            yield ServerSentEvent(raw_data=payload, id=event_id, event=event)
    finally:
        channels[channel].discard(queue)


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, token: str | None = Query(None)):
    await websocket.accept()
    try:
        claims = decode_token(token)
    except HTTPException as e:
        await websocket.close(code=1008, reason=str(e.detail))
        return

    async def forward(channel: str) -> None:
        q: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        channels[channel].add(q)
        try:
            while True:
                event_id, event, payload = await q.get()
                await websocket.send_text(
                    f'{{"type":"message","channel":{json.dumps(channel)},"id":"{event_id}",'
                    f'"event":{json.dumps(event)},"data":{payload}}}'
                )
        finally:
            channels[channel].discard(q)

    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        async for text in websocket.iter_text():
            msg = json.loads(text)
            kind, ref, channel = msg.get("type"), msg.get("ref"), msg.get("channel", "")
            if kind == "subscribe":
                if not allowed(claims, "subscribe", channel):
                    await websocket.send_json({"type": "error", "code": "forbidden", "ref": ref})
                    continue
                tasks[channel] = asyncio.create_task(forward(channel))
                await websocket.send_json(
                    {"type": "subscribed", "channel": channel, "recovered": True, "ref": ref}
                )
            elif kind == "unsubscribe":
                if channel in tasks:
                    tasks.pop(channel).cancel()
                await websocket.send_json({"type": "unsubscribed", "channel": channel, "ref": ref})
            elif kind == "publish":
                if not allowed(claims, "publish", channel):
                    await websocket.send_json({"type": "error", "code": "forbidden", "ref": ref})
                    continue
                eid = do_publish(channel, msg.get("event", "message"), msg.get("data"))
                await websocket.send_json(
                    {"type": "published", "channel": channel, "id": eid, "ref": ref}
                )
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks.values():
            task.cancel()
