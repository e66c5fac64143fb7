"""The authorization rule on SSE streams (the example rule of `authz_example.py`)."""

from __future__ import annotations

import httpx2

from conftest import ServerFactory, TokenFactory
from sse_client import open_stream


async def test_sse_streams_ask_the_rule(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A member streams its room and gets its events; a non-member gets 403, others unaffected."""
    server = start_server(factory="authz_example:create")
    refused = await open_stream(server.port, "room:2", token=make_token(sub="alice"))
    try:
        assert refused.status == 403
        assert b"token may not subscribe to 'room:2'" in refused.body
    finally:
        await refused.close()
    stream = await open_stream(server.port, "room:1", token=make_token(sub="alice"))
    try:
        assert stream.status == 200
        async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
            token = make_token(sub="carol", roles=["moderator"])
            response = await http.post(
                "/channels/room:1/events",
                json={"data": "welcome"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 202
        event = await stream.next_event()
        assert (event.id, event.json()) == (response.json()["id"], "welcome")
    finally:
        await stream.close()
