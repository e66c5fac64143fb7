"""The app class: FastAPI, with long-lived streams served outside its call stack."""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send


class Stream(Protocol):
    """A connection that a route has accepted, to be served after the route returns."""

    async def serve(self, receive: Receive, send: Send) -> None:
        """Serve the connection until it ends, on the server's own channels."""

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
    (or WebSocket accept) through the middleware, and returns. A stream that
    ran inside the route would keep the whole framework stack (about fifteen
    frames of routing, middleware and dependency exit stacks) alive for hours,
    once per connection, and pass each of its thousands of writes through every
    middleware's `send` wrapper. Handed off, it runs here instead, after the
    stack has returned, with the server's `receive` and `send`.

    So middleware added to the app sees a stream's response start and then the
    request returning, not the stream's body. A middleware that buffers or
    rewrites bodies (GZip, `BaseHTTPMiddleware`) must not wrap the streaming
    routes; CORS and other header-only middleware work as usual.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
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


def hand_off(scope: Scope, stream: Stream) -> None:
    """Have `stream` served once the route has returned (see `RealtimeApp`)."""
    handoff = scope.get(_HANDOFF)
    if not isinstance(handoff, _Handoff):
        raise RuntimeError("streams need the app to be a RealtimeApp")
    handoff.stream = stream
