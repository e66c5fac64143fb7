"""Broadcasters: the interface and the implementation this service was rendered with."""

from __future__ import annotations

from ..settings import Settings
from .base import Broadcaster, BroadcasterUnavailable, Subscriber
{% if cookiecutter.broadcaster == "redis" %}
from .redis import RedisBroadcaster
from .redis_cluster import ClusterBroadcaster
{% else %}
from .memory import MemoryBroadcaster
{% endif %}

__all__ = ["Broadcaster", "BroadcasterUnavailable", "Subscriber", "create_broadcaster"]


def create_broadcaster(settings: Settings) -> Broadcaster:
    """The configured broadcaster, not yet started."""
{% if cookiecutter.broadcaster == "redis" %}
    kind = ClusterBroadcaster if settings.redis_cluster else RedisBroadcaster
    return kind(
        settings.redis_url,
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
    )
{% else %}
    return MemoryBroadcaster(
        settings.history_size, settings.history_ttl, max_bytes=settings.history_max_bytes
    )
{% endif %}
