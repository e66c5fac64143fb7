"""Health, readiness, metrics and publishing over plain HTTP, with every error status."""

from __future__ import annotations

from collections.abc import Callable

import httpx2
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.service import Service
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import TokenFactory

CHANNEL = "room:1"


def publish(
    client: TestClient, token: str | None, body: object, channel: str = CHANNEL
) -> httpx2.Response:
    """POST an event; returns the response."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(f"/channels/{channel}/events", json=body, headers=headers)


def test_healthz(client: TestClient) -> None:
    """Liveness answers 200 {"status":"ok"}."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_when_the_broadcaster_is_up(client: TestClient) -> None:
    """Readiness answers 200 {"status":"ready"} while the broadcaster works."""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_metrics_expose_the_documented_series(client: TestClient, make_token: TokenFactory) -> None:
    """/metrics is Prometheus text with every series the README's Metrics section names."""
    assert publish(client, make_token(), {"data": 1}).status_code == 202
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "realtime_connections{",
        "realtime_events_published_total 1.0",
        "realtime_events_delivered_total{",
        "realtime_slow_consumer_disconnects_total{",
        "realtime_broadcaster_up 1.0",
    ):
        assert name in text


def test_publish_is_accepted_with_an_id(client: TestClient, make_token: TokenFactory) -> None:
    """A permitted publish answers 202 with the event id and channel."""
    response = publish(
        client, make_token(publish=["room:*"]), {"event": "chat.new", "data": {"a": [1]}}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["channel"] == CHANNEL and isinstance(body["id"], str) and body["id"]


def test_event_ids_are_unique_and_ordered_per_channel(
    client: TestClient, make_token: TokenFactory
) -> None:
    """Every publish gets a new id, and the channel's history replays them in publish order."""
    token = make_token()
    ids = [publish(client, token, {"data": n}).json()["id"] for n in range(20)]
    assert len(set(ids)) == 20
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    assert client.portal is not None  # the lifespan runs: the client was entered
    replayed = client.portal.call(service.broadcaster.history_after, CHANNEL, ids[0])
    assert [event.id for event in replayed or []] == ids[1:]


@pytest.mark.parametrize("data", [None, 0, "text", [1, 2], {"nested": {"ü": "☃"}}])
def test_any_json_data_is_accepted(
    client: TestClient, make_token: TokenFactory, data: object
) -> None:
    """`data` may be any JSON value, null included."""
    assert publish(client, make_token(), {"data": data}).status_code == 202


@pytest.mark.parametrize(
    ("token_kind", "status"),
    [("none", 401), ("garbage", 401), ("expired", 401), ("wrong_channel", 403)],
)
def test_publish_auth_errors(
    client: TestClient, make_token: TokenFactory, token_kind: str, status: int
) -> None:
    """No, bad or expired token: 401; a token without the permission: 403."""
    token = {
        "none": None,
        "garbage": "garbage",
        "expired": make_token(ttl=-10),
        "wrong_channel": make_token(publish=["other:*"], subscribe=["*"]),
    }[token_kind]
    response = publish(client, token, {"data": 1})
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("channel", ["bad channel", "a" * 129, "ümlaut", "a*b"])
def test_bad_channel_names_are_400(
    client: TestClient, make_token: TokenFactory, channel: str
) -> None:
    """A channel name outside the allowed alphabet or length is a 400."""
    response = publish(client, make_token(), {"data": 1}, channel=channel)
    assert response.status_code == 400
    assert "channel" in response.json()["detail"]


@pytest.mark.parametrize("event", ["", "has space", "x" * 65, "slash/no", "ü"])
def test_bad_event_names_are_400(client: TestClient, make_token: TokenFactory, event: str) -> None:
    """A string event name breaking the rule is a 400."""
    response = publish(client, make_token(), {"event": event, "data": 1})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"event": None, "data": 1},
        {"event": 5, "data": 1},
        {"event": "ok"},
        [1, 2],
        "just a string",
        None,
    ],
)
def test_malformed_bodies_are_422(
    client: TestClient, make_token: TokenFactory, body: object
) -> None:
    """A non-string event, a missing `data` or a non-object body is a 422."""
    response = publish(client, make_token(), body)
    assert response.status_code == 422


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"data": NaN}'])
def test_invalid_json_is_422(client: TestClient, make_token: TokenFactory, raw: bytes) -> None:
    """Bytes that aren't JSON are a 422."""
    response = client.post(
        f"/channels/{CHANNEL}/events",
        content=raw,
        headers={"Authorization": f"Bearer {make_token()}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_oversized_body_is_413_and_the_service_goes_on(
    settings_factory: Callable[..., Settings], make_token: TokenFactory
) -> None:
    """A body over MAX_MESSAGE_BYTES is a 413; the next publish works."""
    app = create_app(settings_factory(max_message_bytes=200))
    with TestClient(app) as client:
        token = make_token()
        assert publish(client, token, {"data": "x" * 300}).status_code == 413
        chunked = client.post(
            f"/channels/{CHANNEL}/events",
            content=iter([b'{"data": "', b"y" * 300, b'"}']),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert chunked.status_code == 413
        assert publish(client, token, {"data": "small"}).status_code == 202
