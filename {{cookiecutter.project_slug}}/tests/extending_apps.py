"""Apps that add to the service as a team would: factories for `uvicorn --factory`.

Each builds the service from the environment, as `main:app` does, then adds
one thing from FastAPI's own documentation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx2
from fastapi import FastAPI, Request, Response
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.mount import mount_realtime

# What the failing middleware refuses to send: a test publishes it to break one stream.
POISON = "poison-pill"

# The apps that add one middleware each, by a short name.
MIDDLEWARE_APPS = {
    "gzip-defaults": "extending_apps:with_gzip",
    "gzip-event-streams": "extending_apps:with_gzip_for_event_streams",
    "http-middleware": "extending_apps:with_http_middleware",
    "pure-asgi-timing": "extending_apps:with_timing_middleware",
    "trusted-host": "extending_apps:with_trusted_host",
}


async def check_plain_routes(name: str, http: httpx2.AsyncClient) -> None:
    """Assert that app `name`'s middleware does to plain routes what FastAPI documents."""
    if name.startswith("gzip"):
        metrics = await http.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert metrics.headers["content-encoding"] == "gzip"
        small = await http.get("/healthz", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under minimum_size
    elif name == "http-middleware":
        health = await http.get("/healthz")
        assert float(health.headers["x-process-time"]) >= 0
    elif name == "pure-asgi-timing":
        health = await http.get("/healthz")
        assert health.headers["server-timing"].startswith("app;dur=")
    elif name == "trusted-host":
        refused = await http.get("/healthz", headers={"Host": "evil.example"})
        assert (refused.status_code, refused.text) == (400, "Invalid host header")
        assert (await http.get("/healthz")).status_code == 200
    else:
        raise AssertionError(f"no check for {name!r}")


def with_gzip() -> FastAPI:
    """GZip with its defaults (event streams are left uncompressed)."""
    app = create_app()
    app.add_middleware(GZipMiddleware, minimum_size=500)
    return app


def with_gzip_for_event_streams() -> FastAPI:
    """GZip told to compress every content type, event streams included."""
    app = create_app()
    app.add_middleware(GZipMiddleware, minimum_size=500, exclude_content_types=())
    return app


def with_http_middleware() -> FastAPI:
    """`@app.middleware("http")`, as in FastAPI's tutorial (a `BaseHTTPMiddleware`)."""
    app = create_app()

    @app.middleware("http")
    async def add_process_time_header(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Process-Time"] = f"{time.perf_counter() - start:.6f}"
        return response

    return app


class TimingMiddleware:
    """A pure ASGI middleware: a `Server-Timing` header on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - start) * 1000
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", b"app;dur=%.3f" % elapsed),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


def with_timing_middleware() -> FastAPI:
    """A pure ASGI middleware added with `add_middleware`."""
    app = create_app()
    app.add_middleware(TimingMiddleware)
    return app


def with_trusted_host() -> FastAPI:
    """`TrustedHostMiddleware` allowing only the loopback address."""
    app = create_app()
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1"])
    return app


class PoisonedError(Exception):
    """Raised by `FailingMiddleware`: a bug in the middleware, as far as the app can tell."""


class FailingMiddleware:
    """A pure ASGI middleware whose `send` raises on any message carrying `POISON`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def checked_send(message: Message) -> None:
            payload = message.get("body") or message.get("text") or b""
            if POISON.encode() in (payload.encode() if isinstance(payload, str) else payload):
                raise PoisonedError("this middleware can't send that")
            await send(message)

        await self.app(scope, receive, checked_send)


def with_failing_middleware() -> FastAPI:
    """`FailingMiddleware`, plus an exception handler and a plain route that needs it."""
    app = create_app()
    app.add_middleware(FailingMiddleware)

    @app.exception_handler(PoisonedError)
    async def poisoned(request: Request, exc: PoisonedError) -> JSONResponse:
        return JSONResponse({"detail": "handled"}, status_code=418)

    @app.get("/fail")
    async def fail() -> None:
        raise PoisonedError("raised by a plain route")

    return app


def mounted() -> FastAPI:
    """An existing app of the team's, with the service mounted at `/realtime`."""
    started: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append("host")
        yield

    host = FastAPI(lifespan=lifespan)

    @host.get("/")
    async def home() -> dict[str, list[str]]:
        return {"started": started}

    mount_realtime(host, "/realtime")
    return host
