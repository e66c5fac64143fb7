"""The ASGI app: `uvicorn {{ cookiecutter.project_slug }}.main:app`, or `create_app(settings)` in tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import PROJECT_NAME, api, demo, jsonlogs, openapi, startup, transports
from .asgi import RealtimeApp
from .auth import TokenVerifier
from .authorization import Authorizer, Rule, authorize
from .broadcast import create_broadcaster
from .connections import ConnectionRegistry
from .metrics import Metrics
from .metrics_group import MetricsGroup
from .service import Service
from .settings import Settings, load_settings
from .shutdown import ShutdownSignals

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, authorize: Rule = authorize) -> FastAPI:
    """Build the app from `settings` (read from the environment when omitted).

    `authorize` decides who may subscribe or publish where (see `authorization.py`).
    Safe to call more than once per process: what it changes beyond the app is
    in `startup.py`, and each of those steps may repeat.
    """
    settings = settings or load_settings()
    startup.configure_process_logging(settings)
    metrics = Metrics(transports.NAMES)
    service = Service(
        settings=settings,
        verifier=TokenVerifier(settings),
        authorizer=Authorizer(authorize),
        broadcaster=create_broadcaster(settings),
        connections=ConnectionRegistry(
            settings.max_connections,
            settings.heartbeat_interval,
            metrics,
            max_per_subject=settings.max_connections_per_subject,
        ),
        metrics=metrics,
        metrics_group=MetricsGroup(metrics),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for warning in settings.startup_warnings():
            logger.warning(warning)
        if too_few_files := startup.allow_open_files(settings.max_connections):
            logger.warning(too_few_files)
        signals = ShutdownSignals(service.connections.close_all, settings.shutdown_grace)
        signals.install()
        await service.verifier.start()
        await service.broadcaster.start()
        metrics.track_broadcaster(service.broadcaster.is_up)
        service.connections.start()
        await service.metrics_group.start()
        startup.freeze_startup_objects()
        startup.collect_young_objects_less_often()
        try:
            yield
        finally:
            service.connections.close_all()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.shutdown_grace):
                    await service.connections.wait_closed()
            await service.connections.stop()
            await service.metrics_group.stop()
            await service.broadcaster.stop()
            signals.uninstall()

    app = RealtimeApp(title=PROJECT_NAME, lifespan=lifespan)
    app.state.service = service
    openapi.install(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_methods=["GET", "POST"],
{% if cookiecutter.transport == "websocket" %}
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
{% else %}
        # Last-Event-ID: a fetch-based SSE client resumes with it.
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"],
{% endif %}
        expose_headers=["Retry-After"],
    )
    app.include_router(api.router)
    for router in transports.ROUTERS:
        app.include_router(router)
    if settings.demo_page:
        app.include_router(demo.router)
    return app


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access, so importing `create_app` needs no settings.
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        application = create_app()
    except Exception as exc:
        # One clear line instead of a traceback inside uvicorn's import.
        message = f"{PROJECT_NAME} can't start: {exc}"
        if jsonlogs.requested():
            print(jsonlogs.line("CRITICAL", __name__, message), file=sys.stderr)
            raise SystemExit(1) from None
        raise SystemExit(message) from None
    globals()["app"] = application
    return application
