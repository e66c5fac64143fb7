"""Idempotent publish: a repeated `Idempotency-Key` returns the first id and publishes nothing."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster
from {{ cookiecutter.project_slug }}.service import Service

from conftest import TokenFactory
from servers import channel_name


def post(
    client: TestClient, token: str, channel: str, data: object, key: str | None
) -> httpx2.Response:
    """Publish `data` with `Idempotency-Key: key` (when given)."""
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/channels/{channel}/events", json={"data": data}, headers=headers)


def history_after(client: TestClient, channel: str, event_id: str) -> list[object]:
    """The data of every retained event after `event_id`, read from the app's broadcaster."""
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    events = client.portal.call(service.broadcaster.history_after, channel, event_id)  # type: ignore[union-attr]
    assert events is not None
    return [e.data for e in events]


def test_a_repeated_key_returns_the_first_id_and_publishes_nothing(
    client: TestClient, make_token: TokenFactory
) -> None:
    """Same key, same channel: 202 with the first id; history holds the event once."""
    token, channel = make_token(), channel_name()
    before = post(client, token, channel, "before", None).json()["id"]
    first = post(client, token, channel, "once", "order-42")
    again = post(client, token, channel, "once", "order-42")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json() == {"id": first.json()["id"], "channel": channel}
    after = post(client, token, channel, "after", "order-43")
    assert after.json()["id"] != first.json()["id"]
    assert history_after(client, channel, before) == [b'"once"', b'"after"']


def test_a_key_is_scoped_to_its_channel(client: TestClient, make_token: TokenFactory) -> None:
    """The same key on another channel is another publish."""
    token, one, other = make_token(), channel_name(), channel_name()
    before = post(client, token, other, "before", None).json()["id"]
    assert post(client, token, one, 1, "shared-key").status_code == 202
    assert post(client, token, other, 2, "shared-key").status_code == 202
    assert history_after(client, other, before) == [b"2"]


def test_a_duplicate_is_not_counted_as_published(
    client: TestClient, make_token: TokenFactory
) -> None:
    """`realtime_events_published_total` counts events, not retries."""
    token, channel = make_token(), channel_name()
    for _ in range(3):
        assert post(client, token, channel, 1, "counted-once").status_code == 202
    assert "realtime_events_published_total 1.0" in client.get("/metrics").text


@pytest.mark.parametrize(
    "key", ["", "x" * 129, "caf\u00e9", "tab\there"], ids=["empty", "129", "latin1", "tab"]
)
def test_an_invalid_key_is_400_and_publishes_nothing(
    client: TestClient, make_token: TokenFactory, key: str
) -> None:
    """A key must be 1-128 printable ASCII characters."""
    token, channel = make_token(), channel_name()
    before = post(client, token, channel, "before", None).json()["id"]
    response = client.post(
        f"/channels/{channel}/events",
        json={"data": 1},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key.encode("latin-1")},  # type: ignore[dict-item]
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "invalid Idempotency-Key: use 1-128 printable ASCII characters"
    }
    assert history_after(client, channel, before) == []
    assert post(client, token, channel, "fine", "x" * 128).status_code == 202


async def test_concurrent_publishes_with_one_key_store_one_event(
    broadcaster: Broadcaster,
) -> None:
    """The check and the store are one atomic step: ten racing publishes, one event."""
    channel = channel_name()
    before = await broadcaster.publish(channel, "message", b"0")
    results = await asyncio.gather(
        *(broadcaster.publish(channel, "message", b"1", "race") for _ in range(10))
    )
    assert len({event.id for event in results}) == 1
    assert sum(not event.duplicate for event in results) == 1
    stored = await broadcaster.history_after(channel, before.id)
    assert stored is not None and [e.data for e in stored] == [b"1"]
