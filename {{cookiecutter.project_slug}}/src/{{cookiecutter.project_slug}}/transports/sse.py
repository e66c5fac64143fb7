"""Server-Sent Events: `GET /channels/{channel}/events`.

Everything that can fail (channel name, token, permission, capacity, broadcaster)
is decided before the stream starts, so failures are plain JSON errors. Then a
small ASGI response of our own streams the connection's outbox: one writer task
per stream, one `send` per batch of pre-encoded frames. The registry's ticker
drives heartbeats and notices writes that no longer complete.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from starlette.types import Message, Receive, Scope, Send

from ..asgi import hand_off
from ..auth import Principal
from ..broadcast import BroadcasterUnavailable
from ..connections import CloseReason, Refusal
from ..events import Event
from ..metrics import Metrics
from ..openapi import TOKEN_REQUIRED
from ..service import Service, ServiceDep, authenticate, check_channel
from .stream import StreamConnection, StreamState

NAME = "sse"
router = APIRouter()
logger = logging.getLogger(__name__)

# What a client should wait before reconnecting after a dropped connection (ms).
RETRY_MS = 3000
# On shutdown every client is told a random delay in this range, so that they
# don't all come back in the same instant.
SHUTDOWN_RETRY_MS = (1000, 5000)
HEARTBEAT = b": ping\n\n"
RETRY = b"retry: %d\n\n" % RETRY_MS
RESYNC = b"event: resync\ndata: {}\n\n"
HEADERS = {
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses unless told not to.
    "X-Accel-Buffering": "no",
}

# A stuck writer can't complete its response, and uvicorn reports an ASGI app
# that returns with an incomplete response as an ERROR. When we end such a
# stream on purpose we have already logged why, so that one record is dropped
# for that request only (the flag lives in the request task's context).
_ABANDONED = contextvars.ContextVar("sse_stream_abandoned", default=False)
_INCOMPLETE_RESPONSE = "ASGI callable returned without completing response."


class _QuietAbandonedStreams(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ABANDONED.get() and record.msg == _INCOMPLETE_RESPONSE)


def _install_log_filter() -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietAbandonedStreams) for f in uvicorn_error.filters):
        uvicorn_error.addFilter(_QuietAbandonedStreams())


_install_log_filter()

# The stream's items for the OpenAPI document, in the shape FastAPI gives its
# own SSE routes: one object per event, its fields named as on the wire.
EVENT_ITEM_SCHEMA = {
    "oneOf": [
        {
            "title": "Event",
            "description": "A published event, live or replayed, in publish order.",
            "type": "object",
            "required": ["id", "event", "data"],
            "properties": {
                "id": {"type": "string", "description": "Opaque; resume after it."},
                "event": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "description": "The published data as compact JSON.",
                },
            },
        },
        {
            "title": "Resync",
            "description": "Sent first when a resume can't be done without a gap: "
            "refetch your state; live events follow.",
            "type": "object",
            "required": ["event", "data"],
            "properties": {"event": {"const": "resync"}, "data": {"const": "{}"}},
        },
        {
            "title": "Retry",
            "description": "Milliseconds to wait before reconnecting.",
            "type": "object",
            "required": ["retry"],
            "properties": {"retry": {"type": "integer", "minimum": 0}},
        },
    ],
    "description": f"Heartbeats are comment lines ({HEARTBEAT.decode().strip()!r}) "
    "sent after `HEARTBEAT_INTERVAL` seconds without an event.",
}


class SSEConnection(StreamConnection[bytes]):
    """One open event stream; the connection policy is `StreamConnection`'s.

    A slow consumer is cut off at once, its writer stopped even though it is
    stuck in `send`: completing the response would be one more `send` that
    waits the same way. So the stream ends incomplete: uvicorn closes the
    connection, and `_QuietAbandonedStreams` keeps its generic "returned without
    completing response" ERROR out of the log, since the reason was already
    logged. Raising instead would log a traceback for something that is not a
    bug. Our slot, queue and subscription are freed at once; the socket goes
    when the kernel can flush what uvicorn already wrote, or the peer goes away:
    ASGI gives an app no way to abort a connection.
    """

    transport = NAME
    label = "SSE"
    cut_off_slow_consumers = True

    def __init__(
        self,
        principal: Principal,
        channel: str,
        *,
        queue_size: int,
        heartbeat_interval: float,
        shutdown_grace: float,
        metrics: Metrics,
    ) -> None:
        super().__init__(
            principal,
            queue_size=queue_size,
            heartbeat_interval=heartbeat_interval,
            shutdown_grace=shutdown_grace,
            metrics=metrics,
        )
        self.channel = channel
        # Heartbeat after this long without a write; a tick early, so that
        # whatever the ticker's phase, the stream is never silent for longer
        # than the interval.
        self._heartbeat_after = heartbeat_interval - min(heartbeat_interval / 4, 1.0)
        self._idle_at = -1  # `writes` when the ticker first saw the stream idle
        self._idle_since = 0.0

    def describe(self) -> str:
        """Who this is, for log lines."""
        return f"sub={self.principal.sub!r}, channel={self.channel!r}"

    # -- the stream ------------------------------------------------------------

    def closing_frame(self) -> bytes:
        """The last bytes of the stream, saying why it ends."""
        if self.reason is CloseReason.SHUTDOWN:
            delay = random.randint(*SHUTDOWN_RETRY_MS)
            return b": server shutting down\nretry: %d\n\n" % delay
        if self.reason is CloseReason.TOKEN_EXPIRED:
            return b": token expired\n\n"
        return b""

    def _served(self) -> None:
        self.outbox.close()
        if self.state is StreamState.CUT_OFF:
            _ABANDONED.set(True)

    async def _failed(self, error: BaseException, send: Send) -> None:
        logger.error("SSE stream failed (%s); ending it", self.describe(), exc_info=error)
        self.outbox.close()
        if not await self._finish(send):
            _ABANDONED.set(True)

    async def _read(self, receive: Receive) -> None:
        # uvicorn answers `http.disconnect` when the client goes away (or once the
        # response is complete), so a closed client frees its slot at once: the
        # writer isn't waited for.
        try:
            message: Message = {}
            while message.get("type") != "http.disconnect":
                message = await receive()
        finally:
            self._stop_waiting()

    async def _finish(self, send: Send) -> bool:
        """End the response after a failure, if `send` still works; False if it didn't."""
        try:
            # Bounded: the client may have stopped reading too.
            async with asyncio.timeout(self._close_limit):
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception:
            return False  # the failure was already logged, with its cause
        return True

    async def _say_hello(self, send: Send) -> None:
        await send({"type": "http.response.body", "body": RETRY, "more_body": True})
        self.writes += 1

    def _next_message(self) -> tuple[Message, int]:
        # Everything queued in one message: a client that fell behind catches up
        # in one write (uvicorn's `send` waits while the socket's buffers are full).
        batch, events = self.outbox.take(), self.outbox.taken_events
        if len(batch) == 1:  # the usual case while the client keeps up
            item = batch[0]
            body = item.sse_frame if isinstance(item, Event) else item
        else:
            body = b"".join([i.sse_frame if isinstance(i, Event) else i for i in batch])
        return {"type": "http.response.body", "body": body, "more_body": True}, events

    def _still_due(self, item: Event | bytes) -> bool:
        # On shutdown what is queued still goes out; after an expired token or
        # for a slow consumer, it is no longer the client's to see.
        return self.reason not in (CloseReason.TOKEN_EXPIRED, CloseReason.SLOW_CONSUMER)

    async def _say_goodbye(self, send: Send) -> None:
        await send({"type": "http.response.body", "body": self.closing_frame(), "more_body": False})
        self.writes += 1

    def _keep_alive(self, now: float) -> None:
        if self._writing:
            return  # a pending write says more than a heartbeat would
        if self.writes != self._idle_at:
            self._idle_at, self._idle_since = self.writes, now
        elif now - self._idle_since >= self._heartbeat_after:
            # The heartbeat is on its way. Its own write doesn't restart the idle
            # clock, or every gap between heartbeats would be a tick longer.
            self._idle_at, self._idle_since = self.writes + 1, now
            self.outbox.push(HEARTBEAT)

    def _lost(self, channel: str) -> None:
        # Events may be missing before what follows: the client refetches its state.
        self.outbox.push(RESYNC)


class EventStreamResponse(Response):
    """The response that starts one `SSEConnection`'s stream and hands it off.

    Not `StreamingResponse`: the stream is driven by the connection's outbox and
    timers, a writer stuck in `send` must be stopped from outside, and the stream
    is served by `asgi.hand_off` (after the route has returned, when it can be).
    """

    media_type = "text/event-stream"

    def __init__(self, connection: SSEConnection, service: Service) -> None:
        # Like `StreamingResponse`, no body: so no `content-length` either.
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self._connection = connection
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
        except BaseException:
            self.discard()
            raise
        await hand_off(scope, receive, send, self)

    async def serve(self, receive: Receive, send: Send) -> None:
        """Run the stream, free the connection's subscription and slot, then run `background`."""
        try:
            await self._connection.serve(receive, send)
        finally:
            self.discard()
        if self.background is not None:
            # As `StreamingResponse` does: the route's `BackgroundTasks` run once
            # the stream has ended.
            await self.background()

    def discard(self) -> None:
        """Free the connection's subscription and registry slot."""
        connection = self._connection
        self._service.broadcaster.unsubscribe(connection.channel, connection.outbox)
        self._service.connections.release(connection)


@router.get(
    "/channels/{channel}/events",
    status_code=200,  # FastAPI can't read it off a response class without a body
    response_class=EventStreamResponse,
    response_description="The channel's events as a `text/event-stream`.",
    openapi_extra={"security": TOKEN_REQUIRED},
    responses={
        200: {"content": {"text/event-stream": {"itemSchema": EVENT_ITEM_SCHEMA}}},
        400: {"description": "Bad channel name"},
        401: {"description": "Missing, invalid or expired token"},
        403: {"description": "The token may not subscribe to this channel"},
        429: {"description": "The token's sub is at MAX_CONNECTIONS_PER_SUBJECT"},
        503: {"description": "At MAX_CONNECTIONS, shutting down, or broadcaster unreachable"},
    },
)
async def stream_events(
    channel: str,
    request: Request,
    service: ServiceDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[str | None, Query()] = None,
) -> EventStreamResponse:
    """Stream `channel`'s events (needs the `subscribe` permission).

    Resumes after `Last-Event-ID` (or `last_event_id`, for clients that can't
    set headers): the retained events after it, then live ones, or `resync`
    first when that can't be done without a gap.
    """
    check_channel(channel)
    principal = await authenticate(service, request)
    if not await service.authorizer.allows(principal, channel, "subscribe"):
        raise HTTPException(403, f"token may not subscribe to {channel!r}")
    settings = service.settings
    connection = SSEConnection(
        principal,
        channel,
        queue_size=settings.outbound_queue_size,
        heartbeat_interval=settings.heartbeat_interval,
        shutdown_grace=settings.shutdown_grace,
        metrics=service.metrics,
    )
    refusal = service.connections.admit(connection)
    if refusal is not None:
        status = 429 if refusal is Refusal.SUBJECT_FULL else 503
        raise HTTPException(status, refusal.value, headers={"Retry-After": "1"})
    # The browser's EventSource sends the header on reconnects, with a newer
    # id than the one its URL was built with.
    resume_from = last_event_id_header or last_event_id or None

    def on_live(recovered: bool) -> None:
        if not recovered:
            connection.outbox.push(RESYNC)

    try:
        await service.broadcaster.subscribe(channel, connection.outbox, resume_from, on_live)
    except BroadcasterUnavailable as exc:
        service.connections.release(connection)
        raise HTTPException(
            503, f"broadcaster unavailable: {exc}", headers={"Retry-After": "1"}
        ) from None
    except BaseException:
        service.connections.release(connection)
        raise
    return EventStreamResponse(connection, service)
