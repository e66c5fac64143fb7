"""The authorization rule on WebSocket subscribe, publish and refresh (`authz_example.py`)."""

from __future__ import annotations

from conftest import ServerFactory, TokenFactory
from ws_client import expect_close, open_ws, request


async def test_websocket_frames_ask_the_rule_with_the_current_token(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Subscribe and publish are decided by the rule; after `refresh` it sees the new claims."""
    server = start_server(factory="authz_example:create")
    async with await open_ws(server, make_token(sub="alice")) as ws:
        refused = await request(ws, {"type": "subscribe", "channel": "room:2"})
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        subscribed = await request(ws, {"type": "subscribe", "channel": "room:1"})
        assert subscribed["type"] == "subscribed"
        publish = {"type": "publish", "channel": "room:1", "data": "hi"}
        refused = await request(ws, publish)
        assert (refused["type"], refused["code"]) == ("error", "forbidden")
        promoted = make_token(sub="alice", roles=["moderator"])
        assert (await request(ws, {"type": "refresh", "token": promoted}))["type"] == "refreshed"
        published = await request(ws, publish)
        assert published["type"] == "published"


async def test_a_failing_rule_closes_only_that_connection_1011(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A rule that raises on a frame: that connection closes 1011, another one carries on."""
    server = start_server(factory="authz_example:create")
    async with (
        await open_ws(server, make_token(sub="alice")) as broken,
        await open_ws(server, make_token(sub="alice")) as other,
    ):
        await broken.send('{"type": "subscribe", "channel": "room:broken"}')
        assert await expect_close(broken) == (1011, "internal error")
        subscribed = await request(other, {"type": "subscribe", "channel": "room:1"})
        assert subscribed["type"] == "subscribed"
    assert "membership database unreachable" in server.output()
