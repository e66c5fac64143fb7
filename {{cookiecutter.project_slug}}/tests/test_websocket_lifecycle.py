"""`WS /ws` lifecycle on a real server: handshake rules, tokens, heartbeats, idle, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from conftest import ServerFactory, SharedServerFactory, TokenFactory
from servers import ServerProcess, channel_name, wait_for
from ws_client import (
    expect_close,
    metric,
    open_ws,
    publish_http,
    recv_frame,
    request,
    subscribe,
)

INTERVAL = 0.5  # the heartbeat server's HEARTBEAT_INTERVAL
ALLOWED_ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def server(shared_server: SharedServerFactory) -> ServerProcess:
    """A server shared by the token tests (slow heartbeats: silence is not under test)."""
    return shared_server(HEARTBEAT_INTERVAL="5", ALLOWED_ORIGINS=ALLOWED_ORIGIN)


@pytest.fixture(scope="module")
def heartbeat_server(shared_server: SharedServerFactory) -> ServerProcess:
    """A server with a short heartbeat interval, shared by the heartbeat tests."""
    return shared_server(HEARTBEAT_INTERVAL=str(INTERVAL), WS_RATE_LIMIT="1000")


async def still_open_until(ws: ClientConnection, deadline: float) -> None:
    """Read (answering pings) until the wall clock passes `deadline`; fail if closed first."""
    while (left := deadline - time.time()) > 0:
        try:
            await recv_frame(ws, timeout=left)
        except TimeoutError:
            return


# -- handshake -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(None, "missing token", id="missing"),
        pytest.param("not-a-jwt", "invalid token", id="garbage"),
    ],
)
async def test_missing_or_invalid_token_is_accepted_then_closed_1008(
    server: ServerProcess, token: str | None, reason: str
) -> None:
    """A bad token: the handshake succeeds, then the server closes with 1008 and a reason."""
    async with await open_ws(server, token) as ws:
        code, text = await expect_close(ws)
    assert code == 1008
    assert text.startswith(reason)


async def test_expired_token_is_closed_1008_token_expired(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """An expired token: 1008 with reason `token expired`."""
    async with await open_ws(server, make_token(ttl=-30)) as ws:
        assert await expect_close(ws) == (1008, "token expired")


async def test_token_from_the_authorization_header_is_accepted(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """`Authorization: Bearer <jwt>` on the handshake authenticates like `?token=`."""
    async with await open_ws(server, header_token=make_token()) as ws:
        _, subscribed = await subscribe(ws, channel_name())
        assert subscribed["recovered"] is True


async def test_foreign_origin_is_refused_with_403_before_accept(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """With `ALLOWED_ORIGINS` set, an `Origin` outside it gets HTTP 403, not a WebSocket."""
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(server, make_token(), origin="https://evil.example.net")
    assert refused.value.response.status_code == 403


async def test_allowed_origin_and_no_origin_are_accepted(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """A listed `Origin` and a handshake without `Origin` (not a browser) both connect."""
    for origin in (ALLOWED_ORIGIN, None):
        async with await open_ws(server, make_token(), origin=origin) as ws:
            _, subscribed = await subscribe(ws, channel_name())
            assert subscribed["type"] == "subscribed"


# -- token lifetime ----------------------------------------------------------------


async def test_connection_closes_1008_when_its_token_expires(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """No later than 1 s after `exp`: close 1008 `token expired`."""
    async with await open_ws(server, make_token(ttl=2)) as ws:
        assert await expect_close(ws, timeout=5) == (1008, "token expired")


async def test_refresh_extends_the_connection_past_the_first_tokens_exp(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """After `refreshed`, the connection outlives the first token; subscriptions stay."""
    first = make_token(sub="alice", ttl=2)
    exp = time.time() + 2
    channel = channel_name()
    async with await open_ws(server, first) as ws:
        await subscribe(ws, channel)
        reply = await request(ws, {"type": "refresh", "token": make_token(sub="alice", ttl=60)})
        assert reply == {"type": "refreshed", "ref": reply["ref"]}
        await still_open_until(ws, exp + 1.5)
        event_id = await publish_http(server, make_token(), channel, "still here")
        assert (await recv_frame(ws))["id"] == event_id


async def test_refresh_for_another_sub_is_forbidden_and_changes_nothing(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """A token for another `sub` is `forbidden`; the first token still ends the connection."""
    async with await open_ws(server, make_token(sub="alice", ttl=2)) as ws:
        reply = await request(ws, {"type": "refresh", "token": make_token(sub="mallory")})
        assert (reply["type"], reply["code"]) == ("error", "forbidden")
        assert await expect_close(ws, timeout=5) == (1008, "token expired")


async def test_refresh_with_an_invalid_token_is_forbidden(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """An invalid or expired refresh token is `forbidden`; the connection lives on."""
    async with await open_ws(server, make_token()) as ws:
        for bad in ("garbage", make_token(ttl=-30)):
            reply = await request(ws, {"type": "refresh", "token": bad})
            assert (reply["type"], reply["code"]) == ("error", "forbidden")
        _, subscribed = await subscribe(ws, channel_name())
        assert subscribed["type"] == "subscribed"


async def test_refreshed_claims_govern_new_subscriptions(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """After `refresh`, the new token's `subscribe` claim decides what may be subscribed."""
    async with await open_ws(server, make_token(subscribe=["a:*"])) as ws:
        await subscribe(ws, "a:1")
        await request(ws, {"type": "refresh", "token": make_token(subscribe=["b:*"])})
        allowed = await request(ws, {"type": "subscribe", "channel": "b:1"})
        assert allowed["type"] == "subscribed"
        refused = await request(ws, {"type": "subscribe", "channel": "a:2"})
        assert refused["code"] == "forbidden"


# -- heartbeats and idle -------------------------------------------------------------


async def test_pings_arrive_at_least_every_interval_while_idle(
    heartbeat_server: ServerProcess, make_token: TokenFactory
) -> None:
    """An idle client that answers pings gets one within every 2 x interval and stays open."""
    async with await open_ws(heartbeat_server, make_token()) as ws:
        for _ in range(4):
            # 2 x interval is the client's watchdog: any longer gap reads as a dead link.
            frame = await recv_frame(ws, timeout=2 * INTERVAL, pings=True)
            assert frame == {"type": "ping"}
        _, subscribed = await subscribe(ws, channel_name())
        assert subscribed["type"] == "subscribed"


async def test_pings_keep_coming_while_messages_stream(
    heartbeat_server: ServerProcess, make_token: TokenFactory
) -> None:
    """While a steady stream of messages flows, pings are still sent at the same cadence."""
    channel = channel_name()
    token = make_token()
    async with (
        await open_ws(heartbeat_server, token) as listener,
        await open_ws(heartbeat_server, token) as publisher,
    ):
        await subscribe(listener, channel)
        pings = messages = 0
        stop = asyncio.Event()

        async def stream() -> None:
            # A publish every 5 ms keeps the listener's writer busy for the whole test.
            n = 0
            while not stop.is_set():
                frame = {"type": "publish", "channel": channel, "data": {"n": n, "pad": "x" * 512}}
                await publisher.send(json.dumps(frame))
                n += 1
                await asyncio.sleep(0.005)

        streamer = asyncio.create_task(stream())
        try:
            while pings < 4:
                last_ping = messages
                frame = await recv_frame(listener, timeout=2 * INTERVAL, pings=True)
                while frame["type"] == "message":
                    messages += 1
                    frame = await recv_frame(listener, timeout=2 * INTERVAL, pings=True)
                assert frame == {"type": "ping"}
                pings += 1
        finally:
            stop.set()
            await streamer
    assert messages > last_ping > 0  # pings came between messages, not only in pauses


async def test_silent_client_is_closed_1001_and_frees_its_slot(
    heartbeat_server: ServerProcess, make_token: TokenFactory
) -> None:
    """No client frame for 2 x interval: close 1001; the connections gauge is back to 0."""

    def connections() -> float:
        return metric(heartbeat_server, "realtime_connections")

    # Earlier tests' sockets on this server are gone once their closes are handled.
    wait_for(lambda: connections() == 0, 5, "earlier connections still count")
    async with await open_ws(heartbeat_server, make_token()) as ws:
        await subscribe(ws, channel_name())
        assert connections() == 1
        code, _ = await expect_close(ws, timeout=10 * INTERVAL)
    assert code == 1001
    wait_for(lambda: connections() == 0, 5, "the idle connection still counts")


# -- shutdown ------------------------------------------------------------------


async def test_sigterm_closes_every_socket_1012_and_exits_within_grace(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """On SIGTERM every client sees 1012 and the process exits within SHUTDOWN_GRACE + 1 s."""
    grace = 3
    server = start_server(SHUTDOWN_GRACE=str(grace), HEARTBEAT_INTERVAL="5")
    clients = [await open_ws(server, make_token(sub=f"user{i}")) for i in range(5)]
    try:
        for ws in clients[:3]:
            await subscribe(ws, channel_name())
        server.signal(signal.SIGTERM)
        signalled = time.monotonic()
        codes = await asyncio.gather(*(expect_close(ws, timeout=grace + 1) for ws in clients))
    finally:
        for ws in clients:
            await ws.close()
    assert [code for code, _ in codes] == [1012] * len(clients)
    left = grace + 1 - (time.monotonic() - signalled)
    # uvicorn re-raises the signal it caught once it is done, hence -SIGTERM.
    assert await asyncio.to_thread(server.wait_exit, left) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.output()
