"""The SSE transport, `GET /channels/{channel}/events`, against a real uvicorn process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from {{ cookiecutter.project_slug }}.auth import Principal
from {{ cookiecutter.project_slug }}.connections import CloseReason
from {{ cookiecutter.project_slug }}.events import Event
from {{ cookiecutter.project_slug }}.metrics import Metrics
from {{ cookiecutter.project_slug }}.outbox import Outbox
from {{ cookiecutter.project_slug }}.transports.sse import HEARTBEAT, SSEConnection

from conftest import ServerFactory, TokenFactory
from servers import ServerProcess, wait_until
from sse_client import Frame, SSEStream, open_stream

CHANNEL = "room:1"


@pytest.fixture
def server(start_server: ServerFactory) -> ServerProcess:
    """A server with the test settings (heartbeat every 0.2 s)."""
    return start_server()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client of `server`, for publishing and scraping."""
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def publish(
    client: httpx2.AsyncClient,
    token: str,
    data: Any,
    *,
    event: str = "message",
    channel: str = CHANNEL,
) -> str:
    """Publish one event; its id."""
    response = await client.post(
        f"/channels/{channel}/events",
        json={"event": event, "data": data},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text
    event_id: str = response.json()["id"]
    return event_id


async def metric(client: httpx2.AsyncClient, name: str) -> float:
    """The value of one series (name with labels) in `/metrics`."""
    text = (await client.get("/metrics")).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics:\n{text}"
    return float(match.group(1))


async def first_frame(stream: SSEStream) -> Frame:
    """The stream's first frame, which must be its `retry:`."""
    frame = await stream.next_frame()
    assert frame is not None
    assert frame.retry is not None, f"the stream must start with retry:, got {frame}"
    return frame


# -- errors before the stream starts ------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "detail"),
    [
        ("missing token", 401, "missing token"),
        ("bad signature", 401, "invalid token: "),
        ("expired token", 401, "token expired"),
        ("no subscribe permission", 403, "token may not subscribe to 'room:1'"),
        ("bad channel name", 400, "invalid channel name: "),
    ],
)
async def test_errors_are_json_before_the_stream_starts(
    server: ServerProcess, make_token: TokenFactory, case: str, status: int, detail: str
) -> None:
    """Auth, permission and channel failures are plain JSON errors, and the token is never logged."""
    token = {
        "missing token": None,
        "bad signature": make_token()[:-4] + "AAAA",
        "expired token": make_token(ttl=-10),
        "no subscribe permission": make_token(subscribe=["other:*"]),
        "bad channel name": make_token(),
    }[case]
    channel = "bad channel!" if case == "bad channel name" else CHANNEL
    stream = await open_stream(server.port, channel.replace(" ", "%20"), query_token=token)
    await stream.close()
    assert stream.status == status
    assert stream.headers["content-type"] == "application/json"
    assert json.loads(stream.body)["detail"].startswith(detail)
    if token is not None:
        assert token not in server.output()


async def test_max_connections_answers_503(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Beyond MAX_CONNECTIONS a new stream is refused with a JSON 503."""
    server = start_server(MAX_CONNECTIONS="2")
    token = make_token()
    open_ones = [await open_stream(server.port, CHANNEL, token=token) for _ in range(2)]
    refused = await open_stream(server.port, CHANNEL, token=token)
    await refused.close()
    assert [s.status for s in open_ones] == [200, 200]
    assert refused.status == 503
    assert json.loads(refused.body)["detail"] == "too many connections"
    for stream in open_ones:
        await stream.close()


async def test_a_closed_stream_frees_its_slot_within_a_second(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A client that goes away frees its MAX_CONNECTIONS slot at once, heartbeat or not."""
    server = start_server(MAX_CONNECTIONS="1", HEARTBEAT_INTERVAL="30")
    token = make_token()
    first = await open_stream(server.port, CHANNEL, token=token)
    assert first.status == 200
    await first.close()
    admitted: list[SSEStream] = []

    async def admitted_again() -> bool:
        stream = await open_stream(server.port, CHANNEL, token=token)
        if stream.status == 200:
            admitted.append(stream)
            return True
        await stream.close()
        return False

    await wait_until(admitted_again, 1.0, "the closed stream's slot was not freed within 1 s")
    await admitted[0].close()


def test_the_stream_is_documented_in_openapi(client: TestClient) -> None:
    """`/openapi.json` describes the stream, its media type and its error statuses."""
    operation = client.get("/openapi.json").json()["paths"]["/channels/{channel}/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"400", "401", "403", "503"} <= operation["responses"].keys()


# -- the stream ---------------------------------------------------------------


async def test_stream_headers_retry_and_framing(
    server: ServerProcess, http: httpx2.AsyncClient, make_token: TokenFactory
) -> None:
    """Headers, `retry:` first, then id/event/data with unicode and nested JSON intact."""
    token = make_token()
    await publish(http, token, "before the stream: not replayed")
    stream = await open_stream(server.port, CHANNEL, query_token=token)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    await first_frame(stream)
    data = {"text": 'héllo ☃ 🎉 "quoted"\nnewline', "nested": {"list": [1, 2.5, None, True]}}
    event_id = await publish(http, token, data, event="chat.new")
    frame = await stream.next_event()
    assert frame.id == event_id
    assert frame.event == "chat.new"
    assert frame.json() == data
    assert "\n" not in (frame.data or "")  # compact JSON: one `data:` line
    await stream.close()
    assert token not in server.output()


async def test_heartbeat_arrives_when_idle(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """An idle stream gets a comment line at least every ~1.5 x HEARTBEAT_INTERVAL."""
    interval = 0.5
    server = start_server(HEARTBEAT_INTERVAL=str(interval))
    stream = await open_stream(server.port, CHANNEL, token=make_token())
    await first_frame(stream)
    for _ in range(3):
        frame = await stream.next_frame(timeout=1.5 * interval)
        assert frame is not None
        assert frame.comments == ["ping"]
        assert not frame.is_event
    await stream.close()


async def test_idle_heartbeats_are_never_further_apart_than_the_interval() -> None:
    """Ticked each second with a 5 s interval, an idle stream's heartbeats come every 4 ticks.

    A heartbeat's own write doesn't restart the idle clock (it used to: every 5
    ticks, so any lateness of the ticker made the silence longer than the interval).
    """
    sent: list[bytes] = []
    never = asyncio.Event()

    async def receive() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message.get("body", b""))

    principal = Principal(sub="alice", exp=time.time() + 3600, subscribe=("*",), publish=())
    connection = SSEConnection(
        principal,
        CHANNEL,
        queue_size=4,
        heartbeat_interval=5.0,
        shutdown_grace=10.0,
        metrics=Metrics(["sse"]),
    )
    serving = asyncio.create_task(connection.serve(receive, send))

    async def let_the_writer_write() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    await let_the_writer_write()  # the stream's opening `retry:`
    heartbeats_at = []
    for now in range(1, 15):
        connection.tick(float(now))
        await let_the_writer_write()
        if sent.count(HEARTBEAT) > len(heartbeats_at):
            heartbeats_at.append(now)
    connection.close(CloseReason.SHUTDOWN)
    await asyncio.wait_for(serving, timeout=5)
    assert heartbeats_at == [5, 9, 13]


async def test_500_rapid_publishes_arrive_in_order(
    server: ServerProcess, http: httpx2.AsyncClient, make_token: TokenFactory
) -> None:
    """Events published back to back arrive complete and in publish order."""
    token = make_token()
    stream = await open_stream(server.port, CHANNEL, token=token)
    await first_frame(stream)
    ids = [await publish(http, token, n) for n in range(500)]
    frames = await stream.events(500, timeout=30)
    assert [f.id for f in frames] == ids
    assert [f.json() for f in frames] == list(range(500))
    await wait_until(
        lambda: _delivered_at_least(http, 500), 5, "realtime_events_delivered_total not counted"
    )
    await stream.close()


async def _delivered_at_least(http: httpx2.AsyncClient, count: int) -> bool:
    return await metric(http, 'realtime_events_delivered_total{transport="sse"}') >= count


# -- resume -------------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query"])
async def test_resume_replays_exactly_the_missed_events_then_live(
    server: ServerProcess, http: httpx2.AsyncClient, make_token: TokenFactory, via: str
) -> None:
    """`Last-Event-ID` (or `last_event_id`) replays what came after it, then live, no dup."""
    token = make_token()
    ids = [await publish(http, token, n) for n in range(5)]
    if via == "header":
        stream = await open_stream(server.port, CHANNEL, token=token, last_event_id=ids[1])
    else:
        stream = await open_stream(
            server.port, CHANNEL, token=token, query={"last_event_id": ids[1]}
        )
    await first_frame(stream)
    replayed = await stream.events(3)
    assert [f.id for f in replayed] == ids[2:]
    assert [f.json() for f in replayed] == [2, 3, 4]
    live_id = await publish(http, token, 5)
    live = await stream.next_event()
    assert live.id == live_id
    assert live.json() == 5
    await stream.close()


async def test_the_header_wins_over_the_query_parameter(
    server: ServerProcess, http: httpx2.AsyncClient, make_token: TokenFactory
) -> None:
    """An EventSource reconnect sends a newer `Last-Event-ID` than its URL's; that one counts."""
    token = make_token()
    ids = [await publish(http, token, n) for n in range(4)]
    stream = await open_stream(
        server.port, CHANNEL, token=token, last_event_id=ids[2], query={"last_event_id": ids[0]}
    )
    await first_frame(stream)
    assert (await stream.next_event()).id == ids[3]
    await stream.close()


async def _assert_resync_then_live(stream: SSEStream, http: httpx2.AsyncClient, token: str) -> None:
    await first_frame(stream)
    resync = await stream.next_event()
    assert resync.event == "resync"
    assert resync.json() == {}
    live_id = await publish(http, token, "live")
    live = await stream.next_event()
    assert live.id == live_id  # nothing replayed between resync and live


async def test_resume_from_a_trimmed_id_sends_resync_first(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """An id older than the retained history (HISTORY_SIZE) gets `resync`, then live only."""
    server = start_server(HISTORY_SIZE="5")
    token = make_token()
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        # A broadcaster keeps *at least* HISTORY_SIZE events (Redis trims in whole
        # blocks of about 100), so publish enough that the first one is surely gone.
        ids = [await publish(http, token, n) for n in range(250)]
        stream = await open_stream(server.port, CHANNEL, token=token, last_event_id=ids[0])
        await _assert_resync_then_live(stream, http, token)
        await stream.close()


async def test_resume_from_an_unknown_id_sends_resync_first(
    server: ServerProcess, http: httpx2.AsyncClient, make_token: TokenFactory
) -> None:
    """A garbage id can't be resumed from: `resync`, then live only."""
    token = make_token()
    await publish(http, token, "retained")
    stream = await open_stream(server.port, CHANNEL, token=token, last_event_id="garbage-id")
    await _assert_resync_then_live(stream, http, token)
    await stream.close()


def test_a_long_replay_does_not_count_against_the_queue() -> None:
    """Resuming with more retained events than OUTBOUND_QUEUE_SIZE is not a slow consumer."""
    overflows: list[bool] = []
    outbox: Outbox[bytes] = Outbox(5, lambda: overflows.append(True))
    outbox.replay([Event(CHANNEL, str(n), "message", b"0") for n in range(20)])
    outbox.push(b": ping\n\n")
    for n in range(5):
        outbox.deliver(Event(CHANNEL, f"live-{n}", "message", b"0"))
    assert not overflows
    outbox.deliver(Event(CHANNEL, "one-too-many", "message", b"0"))
    assert overflows == [True]


# -- slow consumers, expiry, shutdown -------------------------------------------


def _open_non_reading_client(port: int, token: str) -> socket.socket:
    """A client with a tiny receive buffer that sends its request and never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    request = (
        f"GET /channels/{CHANNEL}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


@pytest.mark.timeout(120)  # heavy: give a loaded CI machine room
async def test_a_client_that_stops_reading_is_dropped_and_nobody_waits(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A non-reading client is dropped and counted; the others get every event; the server is fine."""
    server = start_server(OUTBOUND_QUEUE_SIZE="100", HEARTBEAT_INTERVAL="1")
    token = make_token()
    count, payload = 2000, "x" * 8_000  # 16 MB to each reader
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        readers = [await open_stream(server.port, CHANNEL, token=token) for _ in range(2)]
        slow = _open_non_reading_client(server.port, token)
        await wait_until(lambda: _connections_are(http, 3), 5, "the three streams never all opened")
        received = [asyncio.create_task(r.events(count, timeout=45)) for r in readers]
        published = await _publish_concurrently(http, token, count, payload)
        streams = [[f.id for f in await task] for task in received]
        assert streams[0] == streams[1]
        _assert_is_publish_order(streams[0], published)
        await wait_until(
            lambda: _slow_consumers_are(http, 1), 10, "the slow client was not dropped"
        )
        assert (await http.get("/healthz")).status_code == 200
        await wait_until(lambda: _connections_are(http, 2), 5, "the slow client kept its slot")
        for reader in readers:
            await reader.close()
        slow.close()
    output = server.output()
    assert "dropping a slow SSE client" in output
    assert "ERROR" not in output
    assert "Traceback" not in output


async def test_a_write_that_never_completes_drops_the_client(
    server: ServerProcess, http: httpx2.AsyncClient, make_token: TokenFactory
) -> None:
    """A client whose socket stays full for 2 x HEARTBEAT_INTERVAL is dropped before its queue fills."""
    token = make_token()
    slow = _open_non_reading_client(server.port, token)
    await wait_until(lambda: _connections_are(http, 1), 5, "the stream never opened")
    payload = "y" * 60_000
    for n in range(200):  # 12 MB: more than the socket buffers, far fewer events than the queue
        await publish(http, token, [n, payload])
    await wait_until(lambda: _slow_consumers_are(http, 1), 5, "the stalled client was not dropped")
    await wait_until(lambda: _connections_are(http, 0), 5, "the stalled client kept its slot")
    slow.close()
    output = server.output()
    assert "a write has waited" in output
    assert "ERROR" not in output


async def _publish_concurrently(
    http: httpx2.AsyncClient, token: str, count: int, payload: str, publishers: int = 4
) -> list[list[str]]:
    """Publish `count` events from a few concurrent publishers; each one's ids, in its order."""

    async def publisher(first: int) -> list[str]:
        return [await publish(http, token, [n, payload]) for n in range(first, count, publishers)]

    return list(await asyncio.gather(*(publisher(p) for p in range(publishers))))


def _assert_is_publish_order(received: list[str], published: list[list[str]]) -> None:
    assert sorted(received) == sorted(i for ids in published for i in ids)
    position = {event_id: n for n, event_id in enumerate(received)}
    for ids in published:
        # Each publisher waited for every answer, so its events were published in order.
        assert [position[i] for i in ids] == sorted(position[i] for i in ids)


async def _connections_are(http: httpx2.AsyncClient, count: int) -> bool:
    return await metric(http, 'realtime_connections{transport="sse"}') == count


async def _slow_consumers_are(http: httpx2.AsyncClient, count: int) -> bool:
    return await metric(http, 'realtime_slow_consumer_disconnects_total{transport="sse"}') == count


async def test_stream_ends_when_the_token_expires(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """The stream ends no later than 1 s after the token's `exp`."""
    token = make_token(ttl=2)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    stream = await open_stream(server.port, CHANNEL, token=token)
    await first_frame(stream)
    frames = await stream.rest(timeout=exp - time.time() + 1.5)
    assert stream.ended
    assert time.time() >= exp - 0.1  # not before the token expired
    assert any("token expired" in f.comments for f in frames)
    await stream.close()


@pytest.mark.timeout(120)  # heavy: give a loaded CI machine room
async def test_sigterm_ends_1000_streams_and_exits_within_the_grace(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """SIGTERM ends every stream with a randomized `retry:` and uvicorn exits within SHUTDOWN_GRACE."""
    grace = 3.0  # SHUTDOWN_GRACE of the test settings
    token = make_token()
    gate = asyncio.Semaphore(100)

    async def connect() -> SSEStream:
        async with gate:
            stream = await open_stream(server.port, CHANNEL, token=token, timeout=20)
            await first_frame(stream)
            return stream

    streams = await asyncio.gather(*(connect() for _ in range(1000)))
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    # The deadline is the server's; reading the endings only needs the bytes it sent.
    exit_task = asyncio.create_task(asyncio.to_thread(server.wait_exit, grace + 1))
    endings = await asyncio.gather(*(s.rest(timeout=grace + 10) for s in streams))
    drained = time.monotonic() - started
    await exit_task
    exited = time.monotonic() - started
    assert all(s.ended for s in streams), "some streams were cut off instead of ended"
    retries = [f.retry for frames in endings for f in frames if f.retry is not None]
    assert len(retries) == 1000
    assert all(1000 <= r <= 5000 for r in retries)
    assert len(set(retries)) > 1, "every client was told the same retry delay"
    for stream in streams:
        await stream.close()
    print(f"1000 streams ended {drained:.2f} s after SIGTERM; uvicorn exited after {exited:.2f} s")


async def test_sigterm_does_not_wait_for_a_client_that_stopped_reading(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """A stream stuck on a full socket can't hold up shutdown: uvicorn exits within SHUTDOWN_GRACE + 1 s."""
    grace = 2.0
    # With a 30 s heartbeat, stall detection alone would wait a minute.
    server = start_server(HEARTBEAT_INTERVAL="30", SHUTDOWN_GRACE=str(grace))
    token = make_token()
    reader = await open_stream(server.port, CHANNEL, token=token)
    await first_frame(reader)
    slow = _open_non_reading_client(server.port, token)
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        await wait_until(lambda: _connections_are(http, 2), 5, "the streams never opened")
        reading = asyncio.create_task(reader.events(200, timeout=30))
        for n in range(200):  # 12 MB: the slow client's socket is full long before the end
            await publish(http, token, [n, "z" * 60_000])
        await reading
        assert await _slow_consumers_are(http, 0)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    frames = await reader.rest(timeout=grace + 1)
    assert reader.ended
    assert any(f.retry is not None for f in frames)
    await asyncio.to_thread(server.wait_exit, grace + 1 - (time.monotonic() - started))
    slow.close()
    await reader.close()
    assert "Traceback" not in server.output()


async def test_sigterm_ends_streams_on_every_worker(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Under `uvicorn --workers 2`, SIGTERM to the supervisor ends every worker's streams in time."""
    grace = 3.0
    server = start_server(workers=2)
    token = make_token()
    streams = [await open_stream(server.port, CHANNEL, token=token) for _ in range(40)]
    for stream in streams:
        await first_frame(stream)
    server.signal(signal.SIGTERM)
    exit_task = asyncio.create_task(asyncio.to_thread(server.wait_exit, grace + 1))
    endings = await asyncio.gather(*(s.rest(timeout=grace + 10) for s in streams))
    await exit_task
    assert all(s.ended for s in streams), "some streams were cut off instead of ended"
    assert all(any(f.retry is not None for f in frames) for frames in endings)
    for stream in streams:
        await stream.close()
