"""The subscriber of each transport this service was rendered with."""

from __future__ import annotations

{% set names = ["sse", "websocket"] if cookiecutter.transport == "both" else [cookiecutter.transport] %}
{% if "sse" in names %}
from .sse import SSESubscriber
{% endif %}
from .subscriber import Subscriber
{% if "websocket" in names %}
from .websocket import WebSocketSubscriber
{% endif %}

# `--transport` offers exactly these.
SUBSCRIBERS: dict[str, type[Subscriber]] = {
{% if "sse" in names %}
    "sse": SSESubscriber,
{% endif %}
{% if "websocket" in names %}
    "websocket": WebSocketSubscriber,
{% endif %}
}
