"""`WS /ws` frames against a real server: subscribe, replay, unsubscribe, publish, errors."""

from __future__ import annotations

import json

import pytest

from conftest import SharedServerFactory, TokenFactory
from servers import ServerProcess
from ws_client import (
    metric,
    open_ws,
    publish_http,
    recv_frame,
    recv_until,
    request,
    subscribe,
)


@pytest.fixture(scope="module")
def server(shared_server: SharedServerFactory) -> ServerProcess:
    """One server for this module's tests: each uses channels and subs of its own."""
    return shared_server(WS_RATE_LIMIT="1000", HEARTBEAT_INTERVAL="5")


async def test_subscribe_then_live_messages_arrive_in_order(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """`subscribed` (recovered true) comes first, then every live event as a `message`."""
    async with await open_ws(server, make_token()) as ws:
        replayed, subscribed = await subscribe(ws, channel)
        assert replayed == []
        assert subscribed == {
            "type": "subscribed",
            "channel": channel,
            "recovered": True,
            "ref": subscribed["ref"],
        }
        ids = [await publish_http(server, make_token(), channel, {"n": n}) for n in range(3)]
        frames = [await recv_frame(ws) for _ in ids]
    assert frames == [
        {"type": "message", "channel": channel, "id": i, "event": "message", "data": {"n": n}}
        for n, i in enumerate(ids)
    ]


async def test_subscribe_with_last_event_id_replays_exactly_the_missed_events(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """Replay after the given id precedes `subscribed` (recovered true); live follows."""
    token = make_token()
    ids = [await publish_http(server, token, channel, n) for n in range(5)]
    async with await open_ws(server, token) as ws:
        replayed, subscribed = await subscribe(ws, channel, last_event_id=ids[1])
        assert [f["id"] for f in replayed] == ids[2:]
        assert [f["data"] for f in replayed] == [2, 3, 4]
        assert subscribed["recovered"] is True
        live = await publish_http(server, token, channel, 5)
        assert (await recv_frame(ws))["id"] == live


async def test_subscribe_with_unknown_last_event_id_is_not_recovered(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """An id the server can't continue from: nothing replayed, `recovered` false, then live."""
    token = make_token()
    await publish_http(server, token, channel, "old")
    async with await open_ws(server, token) as ws:
        replayed, subscribed = await subscribe(ws, channel, last_event_id="no-such-id")
        assert replayed == []
        assert subscribed["recovered"] is False
        live = await publish_http(server, token, channel, "new")
        frame = await recv_frame(ws)
        assert (frame["id"], frame["data"]) == (live, "new")


async def test_unsubscribe_stops_delivery(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """After `unsubscribed`, events of that channel no longer arrive; others still do."""
    token = make_token()
    async with await open_ws(server, token) as ws:
        await subscribe(ws, channel + "a")
        await subscribe(ws, channel + "b")
        reply = await request(ws, {"type": "unsubscribe", "channel": channel + "a"})
        assert reply == {"type": "unsubscribed", "channel": channel + "a", "ref": reply["ref"]}
        await publish_http(server, token, channel + "a", "dropped")
        marker = await publish_http(server, token, channel + "b", "kept")
        frame = await recv_frame(ws)
        assert (frame["channel"], frame["id"]) == (channel + "b", marker)


async def test_publish_is_acknowledged_and_delivered_to_others(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """`publish` answers `published` with the id; subscribers elsewhere get the event."""
    async with (
        await open_ws(server, make_token(sub="bob")) as listener,
        await open_ws(server, make_token(sub="alice")) as publisher,
    ):
        await subscribe(listener, channel)
        reply = await request(
            publisher,
            {"type": "publish", "channel": channel, "event": "chat", "data": {"text": "hi"}},
        )
        assert reply["type"] == "published"
        assert reply["channel"] == channel
        frame = await recv_frame(listener)
    assert frame == {
        "type": "message",
        "channel": channel,
        "id": reply["id"],
        "event": "chat",
        "data": {"text": "hi"},
    }
    assert metric(server, "realtime_events_delivered_total") >= 1


async def test_publish_without_event_name_uses_message_and_null_data_is_allowed(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """`event` defaults to `message`; `data: null` is a valid event."""
    async with await open_ws(server, make_token()) as ws:
        await subscribe(ws, channel)
        await ws.send(json.dumps({"type": "publish", "channel": channel, "data": None}))
        frames = await recv_until(ws, lambda f: f["type"] == "published")
        if not any(f["type"] == "message" for f in frames):
            frames += await recv_until(ws, lambda f: f["type"] == "message")
    message = next(f for f in frames if f["type"] == "message")
    published = next(f for f in frames if f["type"] == "published")
    assert (message["event"], message["data"]) == ("message", None)
    assert message["id"] == published["id"]


BAD_FRAMES = [
    pytest.param("{not json", "bad_request", id="invalid-json"),
    pytest.param('{"type":"publish","channel":"c","data":NaN}', "bad_request", id="nan"),
    pytest.param("[1, 2]", "bad_request", id="array"),
    pytest.param('"subscribe"', "bad_request", id="string"),
    pytest.param("{}", "bad_request", id="missing-type"),
    pytest.param('{"type": 7}', "bad_request", id="non-string-type"),
    pytest.param('{"type": null}', "bad_request", id="null-type"),
    pytest.param('{"type":"subscribe"}', "bad_request", id="missing-channel"),
    pytest.param('{"type":"subscribe","channel":5}', "bad_request", id="non-string-channel"),
    pytest.param('{"type":"subscribe","channel":"no spaces"}', "bad_request", id="bad-channel"),
    pytest.param('{"type":"publish","channel":"c"}', "bad_request", id="missing-data"),
    pytest.param(
        '{"type":"publish","channel":"c","event":"bad name","data":1}',
        "bad_request",
        id="bad-event-name",
    ),
    pytest.param(
        '{"type":"publish","channel":"c","event":null,"data":1}', "bad_request", id="null-event"
    ),
    pytest.param('{"type":"refresh"}', "bad_request", id="missing-token"),
    pytest.param('{"type":"pong","ref":5}', "bad_request", id="non-string-ref"),
    pytest.param('{"type":"shout"}', "unknown_type", id="unknown-type"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES)
async def test_malformed_frame_gets_an_error_and_the_connection_lives_on(
    server: ServerProcess, make_token: TokenFactory, channel: str, raw: str, code: str
) -> None:
    """Each malformed frame is answered with the right `error` code; a good frame still works."""
    async with await open_ws(server, make_token()) as ws:
        await ws.send(raw)
        error = await recv_frame(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["detail"]
        _, subscribed = await subscribe(ws, channel)
        assert subscribed["recovered"] is True


async def test_error_replies_echo_the_ref(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """An error about a frame that carried a `ref` carries the same `ref`."""
    async with await open_ws(server, make_token()) as ws:
        await ws.send(json.dumps({"type": "shout", "ref": "x-1"}))
        assert (await recv_frame(ws))["ref"] == "x-1"
        await ws.send(json.dumps({"type": "subscribe", "channel": "bad channel", "ref": "x-2"}))
        error = await recv_frame(ws)
        assert (error["code"], error["ref"]) == ("bad_request", "x-2")


async def test_binary_frame_is_a_bad_request(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """The protocol speaks JSON text frames; a binary frame is answered `bad_request`."""
    async with await open_ws(server, make_token()) as ws:
        await ws.send(b'{"type":"pong"}')
        assert (await recv_frame(ws))["code"] == "bad_request"
        await subscribe(ws, channel)


async def test_subscribe_without_permission_is_forbidden(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """A channel outside the `subscribe` claim is `forbidden`; allowed ones still work."""
    async with await open_ws(server, make_token(subscribe=["room:*"])) as ws:
        reply = await request(ws, {"type": "subscribe", "channel": "secret"})
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
        _, subscribed = await subscribe(ws, channel)
        assert subscribed["channel"] == channel


async def test_publish_without_permission_is_forbidden(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """A channel outside the `publish` claim is `forbidden`, and nothing is published to it."""
    forbidden = "news" + channel.removeprefix("room")
    async with await open_ws(server, make_token(publish=["room:*"])) as ws:
        await subscribe(ws, forbidden)
        reply = await request(ws, {"type": "publish", "channel": forbidden, "data": 1})
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
        await ws.send(json.dumps({"type": "publish", "channel": channel, "data": 2, "ref": "ok"}))
        frames = await recv_until(ws, lambda f: f.get("ref") == "ok")
    assert [f["type"] for f in frames] == ["published"]
