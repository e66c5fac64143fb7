"""Serving this service inside another FastAPI app, under a path prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .main import create_app
from .settings import Settings


def mount_realtime(
    host: FastAPI, path: str = "/realtime", settings: Settings | None = None
) -> FastAPI:
    """Serve every route of this service at `path` in `host`; the mounted app, returned.

    Starlette sends no lifespan events to a mounted app, so `host`'s lifespan is
    wrapped: the broadcaster and the connection registry start before the
    host's own startup, and on shutdown (after the host's) open streams are
    closed and the broadcaster is stopped. Call it before `host` starts.
    """
    realtime = create_app(settings)
    host.mount(path, realtime)
    own = realtime.router.lifespan_context
    hosts = host.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with own(realtime), hosts(app) as state:
            yield state  # the host's lifespan state, if it has one

    host.router.lifespan_context = lifespan
    return realtime
