"""`RealtimeApp` and `hand_off`: a stream runs after its route has returned."""

from __future__ import annotations

import pytest
from fastapi import Request
from fastapi.middleware.cors import CORSMiddleware
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

    def __init__(self, stream: RecordingStream) -> None:
        super().__init__(media_type="text/plain")
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        hand_off(scope, self.stream)


def make_app(log: list[str], *, fail_after_handoff: bool = False) -> RealtimeApp:
    app = RealtimeApp()
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN])

    @app.get("/stream")
    async def stream(request: Request) -> Response:
        log.append("route")
        return StartThenHandOff(RecordingStream(log))

    if fail_after_handoff:

        @app.middleware("http")
        async def explode(request: Request, call_next: object) -> Response:
            # Lets the route run (and hand off), then fails on the way out.
            await call_next(request)  # type: ignore[operator]
            raise RuntimeError("boom")

    return app


async def call(app: RealtimeApp) -> list[Message]:
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


def test_hand_off_outside_a_realtime_app_is_an_error() -> None:
    """Without `RealtimeApp` nothing would ever serve the stream: refuse loudly."""
    with pytest.raises(RuntimeError, match="RealtimeApp"):
        hand_off({"type": "http"}, RecordingStream([]))
