"""The transports this service was rendered with, as routers to mount."""

from __future__ import annotations

from fastapi import APIRouter

{% set names = ["sse", "websocket"] if cookiecutter.transport == "both" else [cookiecutter.transport] %}
from . import {{ names | join(", ") }}

# Each transport module has `NAME` (its metrics label) and `router`.
TRANSPORTS = [{{ names | join(", ") }}]
NAMES: tuple[str, ...] = tuple(t.NAME for t in TRANSPORTS)
ROUTERS: tuple[APIRouter, ...] = tuple(t.router for t in TRANSPORTS)
