"""An app whose own SSE route wraps the service's, with `BackgroundTasks` (`uvicorn --factory`)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, Request

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.service import Service, get_service
from {{ cookiecutter.project_slug }}.transports import sse

logger = logging.getLogger("audit")


def with_background_task() -> FastAPI:
    """`GET /audited/channels/{channel}/events`: the usual stream, and a log line once it has ended."""
    app = create_app()

    @app.get("/audited/channels/{channel}/events", response_class=sse.EventStreamResponse)
    async def audited(
        channel: str,
        request: Request,
        service: Annotated[Service, Depends(get_service)],
        background_tasks: BackgroundTasks,
    ) -> sse.EventStreamResponse:
        response = await sse.stream_events(channel, request, service)
        background_tasks.add_task(logger.warning, "stream of %s ended", channel)
        return response

    return app
