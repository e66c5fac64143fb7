"""One accepted WebSocket: its reading, its writer task, and the state they share.

It is served by `asgi.hand_off`: after the route has returned, on the server's
own ASGI `receive` and `send`, or inside the middleware when the app has some
that may touch bodies. Client frames are handled in order, in the server's
task for the connection. The writer, the stall limit, the slow-consumer drop
and closing are `StreamConnection`'s; this module adds the protocol: frames,
close codes, pings and the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.types import Message, Receive, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import AuthError, Principal
from ..broadcast import BroadcasterUnavailable
from ..connections import CloseReason
from ..events import Event, encode_json
from ..service import Service
from .stream import StreamConnection, StreamState
from .ws_frames import (
    PING,
    FrameError,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    encode_frame,
    error_frame,
    parse_frame,
    ref_of,
)
from .ws_ratelimit import FloodGuard, Verdict

logger = logging.getLogger(__name__)

# RFC 6455 close codes, as the protocol assigns them.
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

CLOSE_CODES: dict[CloseReason, int] = {
    CloseReason.SHUTDOWN: SERVICE_RESTART,
    CloseReason.SLOW_CONSUMER: TRY_AGAIN_LATER,
    CloseReason.TOKEN_EXPIRED: POLICY_VIOLATION,
    CloseReason.IDLE: GOING_AWAY,
    CloseReason.OVERLOADED: TRY_AGAIN_LATER,
}

REVOKED_BY_REFRESH = "the refreshed token does not allow subscribing to this channel"

# A generous cap so one connection can't make the broadcaster track unbounded channels.
MAX_SUBSCRIPTIONS = 1000

# A close reason may hold at most 123 bytes of UTF-8 (RFC 6455 §5.5).
_MAX_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame."""
    return text.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")


class WebSocketConnection(StreamConnection[str]):
    """An accepted, authenticated WebSocket, registered with the connection registry.

    Closing frees its subscriptions and registry slot at once; the writer then
    sends what replies are still queued and the close frame.
    """

    transport = "websocket"
    label = "WebSocket"
    # A client that stops reading gets its close frame (1013 for a slow consumer)
    # whenever it catches up; one that never does is closed by the server's own
    # WebSocket pings (uvicorn's `--ws-ping-interval`/`--ws-ping-timeout`). Its
    # slot and subscriptions are freed at once either way.
    cut_off_unread_goodbyes = False
    client_gone_errors = (OSError, RuntimeError, WebSocketDisconnect)

    def __init__(self, service: Service, principal: Principal) -> None:
        settings = service.settings
        super().__init__(
            principal,
            queue_size=settings.outbound_queue_size,
            heartbeat_interval=settings.heartbeat_interval,
            shutdown_grace=settings.shutdown_grace,
            metrics=service.metrics,
        )
        self._service = service
        self._max_bytes = settings.max_message_bytes
        # Ping a little early so that, whatever the ticker's phase, pings are never
        # further apart than the interval.
        self._ping_every = self._interval - min(self._interval / 4, 1.0)
        self.channels: set[str] = set()
        now = time.monotonic()
        self._guard = FloodGuard(settings.ws_rate_limit, now)
        self._last_received = now
        self._last_ping = now
        self._close_frame = (GOING_AWAY, "")

    def describe(self) -> str:
        """Who this is, for log lines."""
        return f"sub={self.principal.sub!r}"

    # -- lifecycle -----------------------------------------------------------

    def _served(self) -> None:
        self._release()

    async def _failed(self, error: BaseException, send: Send) -> None:
        logger.error(
            "WebSocket connection failed (sub=%r, channels=%s); closing it",
            self.principal.sub,
            sorted(self.channels) or "none",
            exc_info=error,
        )
        with contextlib.suppress(Exception):
            # Bounded: the client may have stopped reading too.
            async with asyncio.timeout(self._close_limit):
                await send(
                    {"type": "websocket.close", "code": INTERNAL_ERROR, "reason": "internal error"}
                )

    def discard(self) -> None:
        """Free the connection's slot: it won't be served after all."""
        self._release()

    def close(self, reason: CloseReason) -> None:
        """Close with the code the protocol gives `reason`; never blocks."""
        self._begin_close(CLOSE_CODES[reason], reason.value, reason=reason)

    def _begin_close(
        self,
        code: int,
        text: str,
        *,
        send_frame: bool = True,
        reason: CloseReason | None = None,
    ) -> None:
        if self.state is StreamState.OPEN:
            self._close_frame = (code, close_reason(text))
        self._end(reason, text, goodbye=send_frame)

    def _closing(self) -> None:
        self._release()

    def _release(self) -> None:
        """Free everything the connection holds; its registry slot is reusable at once."""
        self.outbox.close()
        broadcaster = self._service.broadcaster
        for channel in self.channels:
            broadcaster.unsubscribe(channel, self.outbox)
        self.channels.clear()
        self._service.connections.release(self)

    def _keep_alive(self, now: float) -> None:
        if now - self._last_received > self._stall_limit:
            self.close(CloseReason.IDLE)
        elif now - self._last_ping >= self._ping_every:
            self._last_ping = now
            # Urgent: it jumps queued events, so it also goes out while busy streaming.
            self.outbox.push(PING, urgent=True)

    def _lost(self, channel: str) -> None:
        # The subscription goes on, but events may be missing before what follows:
        # the same answer as a resume that couldn't be recovered.
        self._reply(encode_frame("subscribed", None, channel=channel, recovered=False))

    # -- writing ---------------------------------------------------------------

    def _next_message(self) -> tuple[Message, int]:
        # One item per frame, straight to the server: none of
        # `WebSocket.send_text`'s state check and wrapper per frame.
        outbox = self.outbox
        item = outbox.queued.popleft()
        if outbox.uncounted:  # a control item or replayed history is queued
            outbox.forget(item)
        if isinstance(item, Event):
            return {"type": "websocket.send", "text": item.ws_text}, 1
        return {"type": "websocket.send", "text": item}, 0

    def _still_due(self, item: Event | str) -> bool:
        # Replies queued before the close (a last `rate_limited`, say) still go
        # out; undelivered events and heartbeats don't, nor anything once the
        # client is gone.
        return self._goodbye and isinstance(item, str) and item is not PING

    async def _say_goodbye(self, send: Send) -> None:
        code, reason = self._close_frame
        await send({"type": "websocket.close", "code": code, "reason": reason})
        self.writes += 1

    # -- reading ---------------------------------------------------------------

    async def _read(self, receive: Receive) -> None:
        # Until the client goes, or once closing has begun: the writer then
        # sends what is still due and the close frame.
        while self.state is StreamState.OPEN:
            message: Message
            try:
                message = await receive()
            except (OSError, RuntimeError):
                message = {"type": "websocket.disconnect"}
            if message["type"] == "websocket.disconnect":
                self._begin_close(GOING_AWAY, "client gone", send_frame=False)
                return
            try:
                await self._on_frame(message.get("text"), message.get("bytes"))
            except Exception:
                # A bug must not leave a half-working connection behind.
                logger.exception(
                    "WebSocket frame handling failed (sub=%r, channels=%s); closing it",
                    self.principal.sub,
                    sorted(self.channels) or "none",
                )
                self._begin_close(INTERNAL_ERROR, "internal error")

    async def _on_frame(self, text: str | None, data: bytes | None) -> None:
        now = time.monotonic()
        self._last_received = now
        if self._too_big(text, data):
            self._begin_close(MESSAGE_TOO_BIG, f"message larger than {self._max_bytes} bytes")
            return
        verdict = self._guard.check(now)
        if verdict is not Verdict.ALLOW:
            ref = ref_of(text) if text is not None else None
            self._reply(error_frame("rate_limited", "too many frames; slow down", ref))
            if verdict is Verdict.CLOSE:
                logger.warning(
                    "closing a flooding WebSocket client (sub=%r): over %d frames dropped in 1 s",
                    self.principal.sub,
                    self._service.settings.ws_rate_limit,
                )
                self._begin_close(POLICY_VIOLATION, "rate limited")
            return
        if text is None:
            self._reply(
                error_frame("bad_request", "binary frames are not supported: send JSON text")
            )
            return
        try:
            frame = parse_frame(text)
            if isinstance(frame, Subscribe):
                await self._subscribe(frame)
            elif isinstance(frame, Unsubscribe):
                self._unsubscribe(frame)
            elif isinstance(frame, Publish):
                await self._publish(frame)
            elif isinstance(frame, Refresh):
                await self._refresh(frame)
            # A pong needs no answer: receiving it already reset the idle timer.
        except FrameError as exc:
            self._reply(error_frame(exc.code, exc.detail, exc.ref))

    def _too_big(self, text: str | None, data: bytes | None) -> bool:
        if data is not None:
            return len(data) > self._max_bytes
        if text is None:
            return False
        # Encoding only when the character count leaves it in doubt.
        if len(text) > self._max_bytes:
            return True
        return len(text) * 4 > self._max_bytes and len(text.encode()) > self._max_bytes

    def _reply(self, text: str) -> None:
        self.outbox.push(text)

    # -- frames ----------------------------------------------------------------

    async def _subscribe(self, frame: Subscribe) -> None:
        channel, ref = frame.channel, frame.ref
        if not await self._service.authorizer.allows(self.principal, channel, "subscribe"):
            raise FrameError("forbidden", f"token may not subscribe to {channel!r}", ref)
        broadcaster = self._service.broadcaster
        if channel in self.channels:
            if frame.last_event_id is None:
                self._reply(encode_frame("subscribed", ref, channel=channel, recovered=True))
                return
            # A resume on a live subscription starts it again from the given id.
            broadcaster.unsubscribe(channel, self.outbox)
            self.channels.discard(channel)
        elif len(self.channels) >= MAX_SUBSCRIPTIONS:
            raise FrameError(
                "forbidden", f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection", ref
            )

        def acknowledge(recovered: bool) -> None:
            # Runs after any replay and before the first live event.
            self._reply(encode_frame("subscribed", ref, channel=channel, recovered=recovered))

        self.channels.add(channel)
        try:
            await broadcaster.subscribe(channel, self.outbox, frame.last_event_id, acknowledge)
        except BroadcasterUnavailable as exc:
            self.channels.discard(channel)
            raise FrameError("unavailable", f"broadcaster unavailable: {exc}", ref) from None
        if self.state is not StreamState.OPEN:
            # Closed while history was read: `_release` ran before the subscription existed.
            broadcaster.unsubscribe(channel, self.outbox)

    def _unsubscribe(self, frame: Unsubscribe) -> None:
        if frame.channel in self.channels:
            self.channels.discard(frame.channel)
            self._service.broadcaster.unsubscribe(frame.channel, self.outbox)
        self._reply(encode_frame("unsubscribed", frame.ref, channel=frame.channel))

    async def _publish(self, frame: Publish) -> None:
        channel, ref = frame.channel, frame.ref
        if not await self._service.authorizer.allows(self.principal, channel, "publish"):
            raise FrameError("forbidden", f"token may not publish to {channel!r}", ref)
        try:
            data = encode_json(frame.data)
        except ValueError as exc:
            raise FrameError("bad_request", f"field 'data': {exc}", ref) from None
        try:
            event = await self._service.broadcaster.publish(
                channel, frame.event, data, frame.idempotency_key
            )
        except BroadcasterUnavailable as exc:
            raise FrameError("unavailable", f"broadcaster unavailable: {exc}", ref) from None
        if not event.duplicate:
            self._service.metrics.events_published.inc()
        self._reply(encode_frame("published", ref, channel=channel, id=event.id))

    async def _refresh(self, frame: Refresh) -> None:
        try:
            principal = await self._service.verifier.verify_async(frame.token)
        except AuthError as exc:
            raise FrameError("forbidden", f"refresh refused: {exc}", frame.ref) from None
        if principal.sub != self.principal.sub:
            raise FrameError(
                "forbidden", "refresh refused: the token is for another sub", frame.ref
            )
        # The new claims govern what follows, and what is already subscribed:
        # a narrower token is how a client's access is taken back.
        self.principal = principal
        self._service.connections.renew_expiry(self)
        authorizer = self._service.authorizer
        revoked = [
            c
            for c in sorted(self.channels)
            if not await authorizer.allows(principal, c, "subscribe")
        ]
        for channel in revoked:
            self.channels.discard(channel)
            self._service.broadcaster.unsubscribe(channel, self.outbox)
            self._reply(
                encode_frame("unsubscribed", None, channel=channel, reason=REVOKED_BY_REFRESH)
            )
        self._reply(encode_frame("refreshed", frame.ref))


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    """Close an accepted socket that never got a connection object (auth, admission)."""
    with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
        await websocket.close(code, close_reason(reason))
