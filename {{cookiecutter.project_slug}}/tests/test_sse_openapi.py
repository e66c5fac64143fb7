"""The SSE route documents its stream's items, as FastAPI's own SSE routes do."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_sse_route_documents_its_event_items(client: TestClient) -> None:
    """`itemSchema` names the event, resync and retry items; either token scheme is accepted."""
    operation = client.get("/openapi.json").json()["paths"]["/channels/{channel}/events"]["get"]
    content = operation["responses"]["200"]["content"]["text/event-stream"]
    items = {item["title"]: item for item in content["itemSchema"]["oneOf"]}
    assert set(items) == {"Event", "Resync", "Retry"}
    assert items["Event"]["required"] == ["id", "event", "data"]
    assert items["Event"]["properties"]["data"]["contentMediaType"] == "application/json"
    assert items["Resync"]["properties"]["event"] == {"const": "resync"}
    assert operation["security"] == [{"bearerAuth": []}, {"tokenQuery": []}]
