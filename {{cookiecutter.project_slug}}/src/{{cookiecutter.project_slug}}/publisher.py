"""Publishing from the service's own Python code (routes, background tasks, jobs).

`Publisher.publish` is the path `POST /channels/{channel}/events` takes after
authorization: the same broadcaster call, so the same event ids, history and
fan-out, the same `realtime_events_published` metric, and the same refusal
while the broadcaster is down (`BroadcasterUnavailable`, never a silent loss).
Your own code is trusted: no token and no authorization rule are involved.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from .events import (
    DEFAULT_EVENT_NAME,
    IDEMPOTENCY_KEY_RULE,
    encode_json,
    is_valid_idempotency_key,
)
from .permissions import is_valid_channel, is_valid_event_name
from .service import Service, service_of


class InvalidEvent(ValueError):
    """The channel, event name or data can't be published; the message says which."""


class Publisher:
    """Publishes events to this service's channels."""

    __slots__ = ("_service",)

    def __init__(self, service: Service) -> None:
        self._service = service

    @classmethod
    def of(cls, app: Starlette) -> Publisher:
        """The publisher of an app built by `create_app` (for jobs outside requests)."""
        service: Service = app.state.service
        return cls(service)

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        event: str = DEFAULT_EVENT_NAME,
        idempotency_key: str | None = None,
    ) -> str:
        """Publish `data` (anything JSON can encode) to `channel`; returns the event id.

        Raises `InvalidEvent` for a bad channel or event name, data JSON can't
        encode (`inf`, `nan` and lone surrogates included) or data larger than
        `MAX_MESSAGE_BYTES`, and `BroadcasterUnavailable` when the event could
        not be stored and sent on. With an `idempotency_key` (1-128 printable
        ASCII characters) already used on `channel` within `HISTORY_TTL`, nothing
        is published and the first publish's id is returned: a call that raised
        `BroadcasterUnavailable` may be retried with the same key safely.
        """
        if not is_valid_channel(channel):
            raise InvalidEvent(f"invalid channel name {channel!r}")
        if not is_valid_event_name(event):
            raise InvalidEvent(f"invalid event name {event!r}")
        if idempotency_key is not None and not is_valid_idempotency_key(idempotency_key):
            raise InvalidEvent(f"invalid idempotency key: {IDEMPOTENCY_KEY_RULE}")
        try:
            payload = encode_json(data)
        except (TypeError, ValueError) as exc:
            raise InvalidEvent(f"data is not JSON-serialisable: {exc}") from None
        limit = self._service.settings.max_message_bytes
        if len(payload) > limit:
            raise InvalidEvent(f"data larger than MAX_MESSAGE_BYTES ({limit} bytes)")
        published = await self._service.broadcaster.publish(
            channel, event, payload, idempotency_key
        )
        if not published.duplicate:
            self._service.metrics.events_published.inc()
        return published.id


async def get_publisher(connection: HTTPConnection) -> Publisher:
    """The app's `Publisher`, as a FastAPI dependency (`async`: no threadpool hop)."""
    return Publisher(service_of(connection))


PublisherDep = Annotated[Publisher, Depends(get_publisher)]
