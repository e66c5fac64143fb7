"""The OpenAPI document behind `/docs` is enough to call the service: Authorize, then publish."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from conftest import TokenFactory

PUBLISH_PATH = "/channels/{channel}/events"


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    """`/openapi.json` as the service serves it."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def authorize(document: dict[str, Any], operation: dict[str, Any], token: str) -> dict[str, Any]:
    """What `/docs`' Authorize adds to a request, per scheme: each alternative the operation accepts."""
    schemes = document["components"]["securitySchemes"]
    ways: dict[str, Any] = {}
    for requirement in operation["security"]:
        (name,) = requirement
        scheme = schemes[name]
        if scheme["type"] == "http" and scheme["scheme"] == "bearer":
            ways[name] = {"headers": {"Authorization": f"Bearer {token}"}}
        elif scheme["type"] == "apiKey" and scheme["in"] == "query":
            ways[name] = {"params": {scheme["name"]: token}}
        else:
            raise AssertionError(f"a scheme /docs can't fill in: {scheme}")
    return ways


def try_it_out(
    client: TestClient, document: dict[str, Any], credentials: dict[str, Any], channel: str
) -> httpx2.Response:
    """Send the publish operation's own example body, as "Try it out" does."""
    operation = document["paths"][PUBLISH_PATH]["post"]
    body = operation["requestBody"]["content"]["application/json"]["example"]
    return client.post(PUBLISH_PATH.format(channel=channel), json=body, **credentials)


def test_publish_documents_its_body_and_the_token_schemes(document: dict[str, Any]) -> None:
    """The publish operation shows the body schema and accepts a Bearer header or a `token` query."""
    operation = document["paths"][PUBLISH_PATH]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["data"]
    assert schema["properties"]["event"]["default"] == "message"
    assert schema["properties"]["event"]["maxLength"] == 64
    assert operation["security"] == [{"bearerAuth": []}, {"tokenQuery": []}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <jwt>`.",
    }
    assert schemes["tokenQuery"]["in"] == "query"
    assert schemes["tokenQuery"]["name"] == "token"
    assert set(operation["responses"]) >= {"202", "400", "401", "403", "413", "422", "503"}


@pytest.mark.parametrize("scheme", ["bearerAuth", "tokenQuery"])
def test_authorize_then_try_it_out_publishes(
    client: TestClient, document: dict[str, Any], make_token: TokenFactory, scheme: str
) -> None:
    """Authorize with either scheme, send the example body: 202 with the event's id."""
    operation = document["paths"][PUBLISH_PATH]["post"]
    ways = authorize(document, operation, make_token(publish=["room:*"]))
    response = try_it_out(client, document, ways[scheme], "room:docs")
    assert response.status_code == 202, response.text
    answer = response.json()
    published = document["components"]["schemas"]["Published"]
    assert set(answer) == set(published["required"])
    assert answer["channel"] == "room:docs"


def test_try_it_out_without_authorize_is_401(
    client: TestClient, document: dict[str, Any], make_token: TokenFactory
) -> None:
    """Without Authorize the same request is refused; authorized, it goes through after."""
    response = try_it_out(client, document, {}, "room:docs")
    assert response.status_code == 401
    assert response.json() == {"detail": "missing token"}
    assert response.headers["www-authenticate"] == "Bearer"
    ways = authorize(document, document["paths"][PUBLISH_PATH]["post"], make_token())
    assert try_it_out(client, document, ways["bearerAuth"], "room:docs").status_code == 202


def test_authorize_with_a_token_lacking_the_permission_is_403(
    client: TestClient, document: dict[str, Any], make_token: TokenFactory
) -> None:
    """A token for other channels gets 403 through the documented request too."""
    operation = document["paths"][PUBLISH_PATH]["post"]
    ways = authorize(document, operation, make_token(publish=["other:*"]))
    response = try_it_out(client, document, ways["bearerAuth"], "room:docs")
    assert response.status_code == 403
    assert response.json() == {"detail": "token may not publish to 'room:docs'"}


def test_metrics_is_documented_as_text(client: TestClient, document: dict[str, Any]) -> None:
    """`/metrics` is `text/plain` in the document, as it is on the wire."""
    content = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
{% if cookiecutter.transport == "sse" %}


def test_no_asyncapi_document_without_websocket(client: TestClient) -> None:
    """There is no WebSocket protocol to describe: `/asyncapi.json` is 404."""
    assert client.get("/asyncapi.json").status_code == 404
{% endif %}
