"""WebSocket clients get the protocol's answer to hostile frames, and nobody else notices."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import pytest
from starlette.types import Message
from websockets.exceptions import ConnectionClosed

from {{ cookiecutter.project_slug }}.auth import Principal
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.service import Service
from {{ cookiecutter.project_slug }}.settings import Settings
from {{ cookiecutter.project_slug }}.transports.ws_connection import WebSocketConnection
from {{ cookiecutter.project_slug }}.transports.ws_server_frames import Unsubscribed

from conftest import ServerFactory, SharedServerFactory, TokenFactory
from servers import ServerProcess
from ws_client import (
    Frame,
    expect_close,
    open_ws,
    publish_http,
    recv_frame,
    recv_until,
    request,
    subscribe,
)


@pytest.fixture(scope="module")
def server(shared_server: SharedServerFactory) -> ServerProcess:
    """One server for this module's tests."""
    return shared_server(WS_RATE_LIMIT="1000", HEARTBEAT_INTERVAL="5")


def _publish_frame(channel: str, data: str, ref: str | None = None) -> str:
    # `data` is raw JSON text, written as it is (`json.dumps` would refuse or rewrite it).
    # Built by concatenation: doubled braces would read as template syntax here.
    tail = "" if ref is None else ',"ref":' + json.dumps(ref)
    return '{"type":"publish","channel":' + json.dumps(channel) + ',"data":' + data + tail + "}"


async def _still_answers(ws: Any) -> None:
    reply = await request(ws, {"type": "unsubscribe", "channel": "probe"})
    assert reply["type"] == "unsubscribed"


@pytest.mark.parametrize(
    "data", ["1e999", "-1e999", '[1, {"x": 1e999}]', "Infinity", "NaN", '"\\ud800"']
)
async def test_an_unencodable_publish_is_bad_request_and_never_delivered(
    server: ServerProcess, make_token: TokenFactory, channel: str, data: str
) -> None:
    """`bad_request` to the publisher; the subscriber's next message is the valid one."""
    async with await open_ws(server, make_token()) as subscriber:
        await subscribe(subscriber, channel)
        async with await open_ws(server, make_token()) as publisher:
            text = _publish_frame(channel, data, ref="bad")
            await publisher.send(text)
            reply = await recv_frame(publisher)
            assert reply["type"] == "error" and reply["code"] == "bad_request", reply
            good = await request(publisher, {"type": "publish", "channel": channel, "data": 2})
            assert good["type"] == "published"
        message = await recv_frame(subscriber)
        assert (message["type"], message["id"], message["data"]) == ("message", good["id"], 2)


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"unsubscribe","channel":"a","ref":"\\ud800"}',
        '{"type":"\\ud800","ref":"x"}',
        '{"type":"\\udfff"}',
        '{"type":"refresh","token":"\\ud800"}',
        '{"type":"subscribe","channel":"a","last_event_id":"\\ud800"}',
    ],
)
async def test_a_lone_surrogate_anywhere_in_a_frame_is_bad_request(
    server: ServerProcess, make_token: TokenFactory, text: str
) -> None:
    """Answered `bad_request` (no `ref` to echo), and the connection lives on."""
    async with await open_ws(server, make_token()) as ws:
        await ws.send(text)
        reply = await recv_frame(ws)
        assert reply["type"] == "error" and reply["code"] == "bad_request", reply
        assert "ref" not in reply
        assert "surrogate" in reply["detail"]
        await _still_answers(ws)
    assert "Traceback" not in server.output()


@pytest.mark.parametrize(
    "suffix", ["\u00b2", "\u0663", "9" * 5000, None], ids=["sup2", "arabic3", "5000-digits", "long"]
)
async def test_a_hostile_last_event_id_is_not_recovered(
    server: ServerProcess, make_token: TokenFactory, channel: str, suffix: str | None
) -> None:
    """Unknown ids get `subscribed` with `recovered: false`, then live messages."""
    token = make_token()
    first = await publish_http(server, token, channel, 0)
    prefix = first.partition("-")[0]
    hostile = f"{'1' * 5000}-0" if suffix is None else f"{prefix}-{suffix}"
    async with await open_ws(server, token) as ws:
        replayed, subscribed = await subscribe(ws, channel, hostile)
        assert replayed == [] and subscribed["recovered"] is False
        live = await publish_http(server, token, channel, 1)
        assert (await recv_frame(ws))["id"] == live


async def test_a_writer_failure_is_logged_once_and_closes_with_1011(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug while writing ends the connection with 1011 and one logged traceback."""
    service: Service = create_app(settings).state.service
    principal = Principal(sub="alice", exp=2e9, subscribe=("*",), publish=("*",))
    connection = WebSocketConnection(service, principal)
    sent: list[Message] = []
    never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def receive() -> Message:
        return await never

    async def send(message: Message) -> None:
        if message.get("text") == '{"type":"boom"}':
            raise ValueError("a bug in the writer")
        sent.append(message)

    connection.outbox.push('{"type":"fine"}')
    connection.outbox.push('{"type":"boom"}')
    connection.outbox.push('{"type":"never sent"}')
    with caplog.at_level(logging.ERROR):
        async with asyncio.timeout(5):
            await connection.serve(receive, send)
    assert sent == [
        {"type": "websocket.send", "text": '{"type":"fine"}'},
        {"type": "websocket.close", "code": 1011, "reason": "internal error"},
    ]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


def _frames_of(frames: list[Frame], kind: str) -> list[Frame]:
    return [f for f in frames if f["type"] == kind]


async def test_publishes_to_other_channels_keep_flowing_during_the_abuse(
    server: ServerProcess, make_token: TokenFactory, channel: str
) -> None:
    """One client's stream of hostile frames doesn't disturb a bystander's deliveries."""
    token = make_token()
    async with await open_ws(server, token) as bystander, await open_ws(server, token) as abuser:
        await subscribe(bystander, channel)
        for data in ("1e999", '"\\ud800"'):
            await abuser.send(_publish_frame(channel, data))
        await abuser.send('{"type":"\\ud800"}')
        ids = [await publish_http(server, token, channel, n) for n in range(3)]
        frames = await recv_until(bystander, lambda f: f.get("id") == ids[-1])
        assert [f["id"] for f in _frames_of(frames, "message")] == ids
        answers = [await recv_frame(abuser) for _ in range(3)]
        assert [(f["type"], f["code"]) for f in answers] == [("error", "bad_request")] * 3


async def test_max_connections_per_subject_closes_1013_and_spares_other_subjects(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Past MAX_CONNECTIONS_PER_SUBJECT one `sub` is closed 1013; another `sub` connects."""
    limited = start_server(MAX_CONNECTIONS_PER_SUBJECT="2")
    alice = make_token(sub="alice")
    first, second = await open_ws(limited, alice), await open_ws(limited, alice)
    await _still_answers(first)
    await _still_answers(second)
    third = await open_ws(limited, alice)
    assert await expect_close(third) == (1013, "too many connections for this subject")
    async with await open_ws(limited, make_token(sub="bob")) as bob:
        await _still_answers(bob)
    await first.close()
    async with asyncio.timeout(5):
        while True:  # the slot is free again once the server saw the close
            again = await open_ws(limited, alice)
            try:
                await _still_answers(again)
                break
            except ConnectionClosed:
                continue
            finally:
                await again.close()
    await second.close()


async def test_a_narrower_refresh_unsubscribes_what_it_no_longer_covers(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """`unsubscribed` with a reason for each lost channel, then `refreshed`; the rest stays."""
    kept, revoked = f"room:{uuid.uuid4().hex[:8]}", f"lobby:{uuid.uuid4().hex[:8]}"
    async with (
        await open_ws(server, make_token(sub="carol")) as ws,
        await open_ws(server, make_token(sub="dave")) as bystander,
    ):
        await subscribe(ws, kept)
        await subscribe(ws, revoked)
        await subscribe(bystander, revoked)
        narrower = make_token(sub="carol", subscribe=["room:*"])
        await ws.send(json.dumps({"type": "refresh", "token": narrower, "ref": "narrow"}))
        frames = await recv_until(ws, lambda f: f["type"] == "refreshed")
        assert frames == [
            {
                "type": "unsubscribed",
                "channel": revoked,
                "reason": "the refreshed token does not allow subscribing to this channel",
            },
            {"type": "refreshed", "ref": "narrow"},
        ]
        Unsubscribed.model_validate(frames[0])  # the documented frame model allows it
        token = make_token()
        gone = await publish_http(server, token, revoked, "not for carol")
        live = await publish_http(server, token, kept, "for carol")
        assert (await recv_frame(ws))["id"] == live
        assert (await recv_frame(bystander))["id"] == gone  # dave's subscription is untouched
        again = await request(ws, {"type": "subscribe", "channel": revoked})
        assert (again["type"], again["code"]) == ("error", "forbidden")
