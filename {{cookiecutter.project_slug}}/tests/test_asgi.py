"""`RealtimeApp` and `hand_off`: a stream runs after its route has returned, unless middleware needs it inside."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import Response
from starlette.types import Message, Receive, Scope, Send

from {{ cookiecutter.project_slug }}.asgi import RealtimeApp, hand_off

ORIGIN = "https://app.example.com"


class RecordingStream:
    """A stream that writes two chunks and records what happened to it, in order."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def serve(self, receive: Receive, send: Send) -> None:
        self.log.append("serve")
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    def discard(self) -> None:
        self.log.append("discard")


class StartThenHandOff(Response):
    """Starts the response through the middleware, then hands the stream off."""

    def __init__(self, stream: RecordingStream, *, fail_after: bool = False) -> None:
        super().__init__(media_type="text/plain")
        self.stream = stream
        self.fail_after = fail_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await hand_off(scope, receive, send, self.stream)
        if self.fail_after:
            raise RuntimeError("boom")


def make_app(
    log: list[str], *, fail_after_handoff: bool = False, app: FastAPI | None = None
) -> FastAPI:
    app = app or RealtimeApp()
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN])

    @app.get("/stream")
    async def stream(request: Request) -> Response:
        log.append("route")
        return StartThenHandOff(RecordingStream(log), fail_after=fail_after_handoff)

    return app


async def call(app: FastAPI) -> list[Message]:
    """One GET /stream through the app; every message it sent, in order."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/stream",
        "raw_path": b"/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"origin", ORIGIN.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return sent


async def test_the_stream_runs_after_the_route_with_the_middleware_headers() -> None:
    """The route returns first; the start carries CORS headers; every chunk arrives in order."""
    log: list[str] = []
    sent = await call(make_app(log))
    assert log == ["route", "serve"]
    assert [m["type"] for m in sent] == ["http.response.start", *["http.response.body"] * 2]
    headers = dict(sent[0]["headers"])
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert b"".join(m["body"] for m in sent[1:]) == b"ab"


async def test_a_stream_whose_request_fails_after_the_handoff_is_discarded() -> None:
    """An error on the way out frees the stream instead of leaking its connection."""
    log: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        await call(make_app(log, fail_after_handoff=True))
    assert log == ["route", "discard"]


async def test_with_other_middleware_the_stream_runs_inside_it() -> None:
    """A middleware that may touch bodies sees every chunk, and returns after the stream."""
    log: list[str] = []
    app = make_app(log)

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        log.append("middleware returned")
        response.headers["X-Seen"] = "yes"
        return response

    sent = await call(app)
    assert log == ["route", "serve", "middleware returned"]
    assert dict(sent[0]["headers"])[b"x-seen"] == b"yes"
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"ab"


def test_only_header_only_middleware_keeps_the_handoff() -> None:
    """The app decides when its stack is built: CORS alone hands off, anything else doesn't."""
    cors_only = make_app([])
    cors_only.build_middleware_stack()
    assert isinstance(cors_only, RealtimeApp) and cors_only.hands_off
    with_gzip = make_app([])
    with_gzip.add_middleware(GZipMiddleware)
    with_gzip.build_middleware_stack()
    assert isinstance(with_gzip, RealtimeApp) and not with_gzip.hands_off


async def test_outside_a_realtime_app_the_stream_runs_inside_the_route() -> None:
    """In a plain FastAPI app (the routes included elsewhere) streams still work, inline."""
    log: list[str] = []
    sent = await call(make_app(log, app=FastAPI()))
    assert log == ["route", "serve"]
    assert b"".join(m["body"] for m in sent[1:]) == b"ab"
