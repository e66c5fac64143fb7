"""The app class: FastAPI that also hands long-lived streams the server's own `send`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

SERVER_SEND = "realtime.server_send"


class RealtimeApp(FastAPI):
    """FastAPI, plus the ASGI server's `send` in every scope under `SERVER_SEND`.

    Every middleware wraps `send`. A stream writes thousands of chunks, and those
    wrappers cost about 15 % of the CPU per delivery (profiled) while acting only
    on a response's start and its last chunk. So a stream sends those two through
    the stack as usual and the chunks in between straight to the server. (A
    middleware that rewrites bodies, such as compression, must not wrap streams.)
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def server_send(scope: Scope, fallback: Send) -> Send:
    """The server's own `send` for this request, or `fallback` outside `RealtimeApp`."""
    direct: Send = scope.get(SERVER_SEND, fallback)
    return direct
