"""The app class: FastAPI, with long-lived streams served outside its call stack when safe."""

from __future__ import annotations

import logging
from typing import ClassVar, Protocol

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)


class Stream(Protocol):
    """A connection that a route has accepted, to be served until it ends."""

    async def serve(self, receive: Receive, send: Send) -> None:
        """Serve the connection until it ends, on the given channels."""

    def discard(self) -> None:
        """Free what the connection holds: it won't be served after all."""


_HANDOFF = "realtime.handoff"


class _Handoff:
    __slots__ = ("stream",)

    def __init__(self) -> None:
        self.stream: Stream | None = None


class RealtimeApp(FastAPI):
    """FastAPI, plus `hand_off`: a route decides, then the stream runs on its own.

    A route answers in the usual way: it authenticates, sends the response start
    (or WebSocket accept) through the middleware, and hands the stream to
    `hand_off`. A stream served inside the route would keep the whole framework
    stack (about fifteen frames of routing, middleware and dependency exit
    stacks) alive for hours, once per connection, and pass each of its
    thousands of writes through every middleware's `send` wrapper.

    So, while every middleware added to the app only touches a response's
    start (`handoff_safe_middleware`: the CORS middleware this service adds),
    the stream runs here instead, after the stack has returned, with the
    server's `receive` and `send`. Any other middleware (GZip,
    `BaseHTTPMiddleware`, `@app.middleware("http")`, your own ASGI class) may
    read or rewrite bodies or wait for the response to end, so as soon as one
    is added, streams are served inside the chain like any other response:
    every middleware sees every byte, at the memory and speed cost above.
    """

    # Middleware known to leave a stream's body alone. Add a class here only if
    # it never wraps `send` for anything but `http.response.start`.
    handoff_safe_middleware: ClassVar[frozenset[object]] = frozenset({CORSMiddleware})
    hands_off = True

    def build_middleware_stack(self) -> ASGIApp:
        """Build the stack, and decide whether streams may be served outside it."""
        others = [
            getattr(m.cls, "__name__", repr(m.cls))
            for m in self.user_middleware
            if m.cls not in self.handoff_safe_middleware
        ]
        self.hands_off = not others
        if others:
            logger.info(
                "streams are served inside the middleware, which may change their bodies: %s",
                ", ".join(others),
            )
        return super().build_middleware_stack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        if scope["type"] == "lifespan" or not self.hands_off:
            await super().__call__(scope, receive, send)
            return
        handoff = _Handoff()
        try:
            # A copy for the framework: it stores per-request state in the scope
            # (dependency exit stacks, the route, the endpoint), which a stream
            # outliving the request has no use for.
            await super().__call__({**scope, _HANDOFF: handoff}, receive, send)
        except BaseException:
            if handoff.stream is not None:
                handoff.stream.discard()
            raise
        if handoff.stream is not None:
            await handoff.stream.serve(receive, send)


async def hand_off(scope: Scope, receive: Receive, send: Send, stream: Stream) -> None:
    """Serve `stream`: after the route has returned when the app allows it, else now.

    `receive` and `send` are the route's own, used when the stream is served
    inside the middleware (see `RealtimeApp`), and in any app that is not a
    `RealtimeApp`.
    """
    handoff = scope.get(_HANDOFF)
    if isinstance(handoff, _Handoff):
        handoff.stream = stream
        return
    await stream.serve(receive, send)
