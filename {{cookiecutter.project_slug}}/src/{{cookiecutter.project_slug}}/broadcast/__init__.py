"""The broadcaster (local fan-out, `hub`) composed with the backend this service was rendered with."""

from __future__ import annotations

from ..settings import Settings
from .backend import Backend, BroadcasterUnavailable
from .hub import Broadcaster, Subscriber
{% if cookiecutter.broadcaster == "redis" %}
from .redis import RedisBackend
{% else %}
from .memory import MemoryBackend
{% endif %}

__all__ = ["Backend", "Broadcaster", "BroadcasterUnavailable", "Subscriber", "create_broadcaster"]


def create_broadcaster(settings: Settings) -> Broadcaster:
    """The configured broadcaster, not yet started."""
{% if cookiecutter.broadcaster == "redis" %}
    backend = RedisBackend(
        settings.redis_url,
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
        cluster=settings.redis_cluster,
    )
{% else %}
    backend = MemoryBackend(
        settings.history_size, settings.history_ttl, max_bytes=settings.history_max_bytes
    )
{% endif %}
    return Broadcaster(backend)
