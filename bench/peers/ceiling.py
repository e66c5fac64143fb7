"""ceiling — about the least work a uvicorn app can do per delivery, on the same URLs.

A bare ASGI app (no framework routing, no pydantic):
* each event is encoded ONCE per process: the SSE bytes and the WS frame text
  are built once and the same object is put on every subscriber's queue;
* per-client BOUNDED deque (OUTBOUND_QUEUE_SIZE, default 1000) + one waiter
  future; a sender coalesces everything queued into one ASGI send (SSE);
* a client whose queue overflows is dropped at once (its transport aborted), so
  it can't delay anyone else;
* one global heartbeat task instead of a timer per connection;
* Redis mode (BROADCAST=redis): ONE pub/sub connection per worker process;
  the publisher puts a pre-built envelope on Redis, each worker turns it into
  SSE bytes / WS text by string concatenation (no JSON round trip).

It deliberately skips what a service needs (history, resume, limits, metrics
beyond a counter, validation details): it is a yardstick, not a design to copy.

Run: JWT_SECRET=... [BROADCAST=redis REDIS_URL=...] uvicorn peers.ceiling:app --port 8000
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import os
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import jwt

JWT_SECRET = os.environ["JWT_SECRET"]
BROADCAST = os.environ.get("BROADCAST", "memory")
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
HEARTBEAT_INTERVAL = float(os.environ.get("HEARTBEAT_INTERVAL", "15"))
QMAX = int(os.environ.get("OUTBOUND_QUEUE_SIZE", "1000"))

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
JSON_HDR = [(b"content-type", b"application/json")]
SSE_PING = b": ping\n\n"
WS_PING = '{"type":"ping"}'
COUNTERS = {"slow_consumer_disconnects_sse": 0, "slow_consumer_disconnects_ws": 0, "published": 0}

_claims_cache: dict[str, dict[str, Any]] = {}


def claims_of(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    c = _claims_cache.get(token)
    if c is not None and c["exp"] > time.time():
        return c
    try:
        c = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return None
    if len(_claims_cache) > 10000:
        _claims_cache.clear()
    _claims_cache[token] = c
    return c


def allowed(claims: dict[str, Any], perm: str, channel: str) -> bool:
    return any(fnmatch.fnmatchcase(channel, p) for p in claims.get(perm, ()))


class Sub:
    __slots__ = ("dead", "kind", "last", "q", "send", "task", "waiter")

    def __init__(self, kind: str, send) -> None:
        self.q: deque = deque()
        self.waiter: asyncio.Future | None = None
        self.dead = False
        self.kind = kind
        self.task: asyncio.Task | None = None
        self.send = send
        self.last = time.monotonic()

    def push(self, item) -> None:
        if self.dead:
            return
        if len(self.q) >= QMAX:
            self.kill()
            return
        self.q.append(item)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def kill(self) -> None:
        self.dead = True
        COUNTERS[f"slow_consumer_disconnects_{self.kind}"] += 1
        owner = getattr(self.send, "__self__", None)  # uvicorn protocol object
        tr = getattr(owner, "transport", None)
        if tr is not None:
            tr.abort()
        if self.task is not None:
            self.task.cancel()
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class Hub:
    def __init__(self) -> None:
        self.channels: dict[str, set[Sub]] = {}
        self.ids = itertools.count(1)

    def add(self, ch: str, s: Sub) -> None:
        self.channels.setdefault(ch, set()).add(s)

    def remove(self, ch: str, s: Sub) -> None:
        subs = self.channels.get(ch)
        if subs is not None:
            subs.discard(s)
            if not subs:
                del self.channels[ch]

    def deliver(self, ch: str, eid: str, event: str, data_json: str) -> None:
        subs = self.channels.get(ch)
        if not subs:
            return
        sse = ws = None
        for s in list(subs):
            if s.kind == "sse":
                if sse is None:
                    sse = f"id: {eid}\nevent: {event}\ndata: {data_json}\n\n".encode()
                s.push(sse)
            else:
                if ws is None:
                    ws = (
                        f'{{"type":"message","channel":{json.dumps(ch)},"id":"{eid}",'
                        f'"event":"{event}","data":{data_json}}}'
                    )
                s.push(ws)


hub = Hub()


class RedisBus:
    """One pub/sub connection per worker process; envelope 'channel\\nid\\nevent\\ndata_json'."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url)
        self.ps = self.r.pubsub()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.ps.psubscribe("rt:*")
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            msg = await self.ps.get_message(ignore_subscribe_messages=True, timeout=None)
            if msg is None or msg["type"] != "pmessage":
                continue
            ch, eid, event, data_json = msg["data"].decode().split("\n", 3)
            hub.deliver(ch, eid, event, data_json)

    async def publish(self, ch: str, eid: str, event: str, data_json: str) -> None:
        await self.r.publish("rt:" + ch, f"{ch}\n{eid}\n{event}\n{data_json}")


bus: RedisBus | None = None


async def heartbeat_loop() -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_INTERVAL / 2)
        cutoff = time.monotonic() - HEARTBEAT_INTERVAL
        for subs in list(hub.channels.values()):
            for s in list(subs):
                if s.last < cutoff and not s.q:
                    s.push(SSE_PING if s.kind == "sse" else WS_PING)


async def respond(send, status: int, obj: Any) -> None:
    body = json.dumps(obj).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HDR, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bearer(scope) -> str | None:
    for k, v in scope["headers"]:
        if k == b"authorization" and v.startswith(b"Bearer "):
            return v[7:].decode()
    return None


def query_token(scope) -> str | None:
    qs = scope.get("query_string", b"")
    if not qs:
        return None
    return parse_qs(qs.decode()).get("token", [None])[0]


async def handle_publish(scope, receive, send, ch: str) -> None:
    claims = claims_of(bearer(scope))
    if claims is None:
        return await respond(send, 401, {"detail": "invalid token"})
    if not allowed(claims, "publish", ch):
        return await respond(send, 403, {"detail": "forbidden"})
    chunks = []
    while True:
        m = await receive()
        chunks.append(m.get("body", b""))
        if not m.get("more_body"):
            break
    try:
        body = json.loads(b"".join(chunks))
        event = body.get("event", "message")
        data_json = json.dumps(body.get("data"), separators=(",", ":"))
    except (ValueError, AttributeError):
        return await respond(send, 422, {"detail": "bad body"})
    eid = str(next(hub.ids)) if bus is None else str(time.time_ns())
    COUNTERS["published"] += 1
    if bus is None:
        hub.deliver(ch, eid, event, data_json)
    else:
        await bus.publish(ch, eid, event, data_json)
    await respond(send, 202, {"id": eid, "channel": ch})


async def handle_sse(scope, receive, send, ch: str) -> None:
    claims = claims_of(query_token(scope) or bearer(scope))
    if claims is None:
        return await respond(send, 401, {"detail": "invalid token"})
    if not allowed(claims, "subscribe", ch):
        return await respond(send, 403, {"detail": "forbidden"})
    sub = Sub("sse", send)
    sub.task = asyncio.current_task()
    owner = getattr(send, "__self__", None)
    hub.add(ch, sub)
    loop = asyncio.get_running_loop()

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not sub.dead:
            sub.dead = True
            w = sub.waiter
            if w is not None and not w.done():
                w.set_result(None)

    watcher = loop.create_task(watch_disconnect())
    try:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
        q = sub.q
        while not sub.dead:
            if not q:
                sub.waiter = loop.create_future()
                await sub.waiter
                sub.waiter = None
                continue
            if len(q) == 1:
                body = q.popleft()
            else:
                body = b"".join(q)
                q.clear()
            await send({"type": "http.response.body", "body": body, "more_body": True})
            sub.last = time.monotonic()
            if owner is not None and owner.disconnected:
                break
    except asyncio.CancelledError:
        if not sub.dead:
            raise
    finally:
        watcher.cancel()
        hub.remove(ch, sub)


async def handle_ws(scope, receive, send) -> None:
    m = await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    claims = claims_of(query_token(scope) or bearer(scope))
    if claims is None:
        await send({"type": "websocket.close", "code": 1008, "reason": "invalid token"})
        return
    sub = Sub("ws", send)
    channels: set[str] = set()
    loop = asyncio.get_running_loop()

    async def sender() -> None:
        q = sub.q
        while not sub.dead:
            if not q:
                sub.waiter = loop.create_future()
                await sub.waiter
                sub.waiter = None
                continue
            await send({"type": "websocket.send", "text": q.popleft()})
            sub.last = time.monotonic()

    sub.task = asyncio.create_task(sender())
    try:
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                break
            text = m.get("text") or (m.get("bytes") or b"").decode()
            try:
                msg = json.loads(text)
                kind = msg.get("type")
            except (ValueError, AttributeError):
                sub.push('{"type":"error","code":"bad_request","detail":"invalid JSON"}')
                continue
            ref = msg.get("ref")
            ch = msg.get("channel", "")
            if kind == "subscribe":
                if not allowed(claims, "subscribe", ch):
                    sub.push(
                        json.dumps({"type": "error", "code": "forbidden", "detail": ch, "ref": ref})
                    )
                    continue
                channels.add(ch)
                hub.add(ch, sub)
                sub.push(
                    json.dumps(
                        {"type": "subscribed", "channel": ch, "recovered": False, "ref": ref}
                    )
                )
            elif kind == "unsubscribe":
                channels.discard(ch)
                hub.remove(ch, sub)
                sub.push(json.dumps({"type": "unsubscribed", "channel": ch, "ref": ref}))
            elif kind == "pong":
                pass
            else:
                sub.push(
                    json.dumps(
                        {"type": "error", "code": "unknown_type", "detail": str(kind), "ref": ref}
                    )
                )
            if sub.dead:
                break
    finally:
        for ch in channels:
            hub.remove(ch, sub)
        if not sub.dead:
            sub.dead = True
            sub.task.cancel()


async def app(scope, receive, send) -> None:
    global bus
    t = scope["type"]
    if t == "http":
        path = scope["path"]
        if path.startswith("/channels/") and path.endswith("/events"):
            ch = path[10:-7]
            if scope["method"] == "POST":
                return await handle_publish(scope, receive, send, ch)
            return await handle_sse(scope, receive, send, ch)
        if path == "/healthz":
            return await respond(send, 200, {"status": "ok"})
        if path == "/metrics":
            conns = {"sse": 0, "ws": 0}
            for subs in hub.channels.values():
                for x in subs:
                    conns[x.kind] += 1
            body = (
                "".join(f'realtime_connections{{transport="{k}"}} {v}\n' for k, v in conns.items())
                + f"realtime_events_published_total {COUNTERS['published']}\n"
                + "".join(
                    f'realtime_slow_consumer_disconnects_total{{transport="{k}"}} '
                    f"{COUNTERS['slow_consumer_disconnects_' + k]}\n"
                    for k in ("sse", "ws")
                )
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            return await send({"type": "http.response.body", "body": body})
        return await respond(send, 404, {"detail": "not found"})
    if t == "websocket":
        return await handle_ws(scope, receive, send)
    if t == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                asyncio.get_running_loop().create_task(heartbeat_loop())
                if BROADCAST == "redis":
                    bus = RedisBus(REDIS_URL)
                    await bus.start()
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
