"""SSE subscribers are unharmed by hostile publishes and resume ids (real server)."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from conftest import ServerFactory, TokenFactory
from servers import ServerProcess
from sse_client import open_stream

CHANNEL = "room:hostile"


@pytest.fixture
def server(start_server: ServerFactory) -> ServerProcess:
    """A server with the test settings."""
    return start_server()


async def _publish(http: httpx2.AsyncClient, token: str, body: bytes) -> httpx2.Response:
    return await http.post(
        f"/channels/{CHANNEL}/events",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def test_an_unencodable_publish_never_reaches_a_stream(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """`1e999` and a lone surrogate are 422; the subscriber's next event is the valid one."""
    token = make_token()
    stream = await open_stream(server.port, CHANNEL, token=token)
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        before = (await _publish(http, token, b'{"data": 0}')).json()["id"]
        assert (await stream.next_event()).id == before
        for body in (b'{"data": 1e999}', b'{"data": [-1e999]}', b'{"data": "\\ud800"}'):
            response = await _publish(http, token, body)
            assert response.status_code == 422, response.text
        good = await _publish(http, token, b'{"data": {"n": 1}}')
        assert good.status_code == 202
    event = await stream.next_event()
    assert (event.id, event.json()) == (good.json()["id"], {"n": 1})
    await stream.close()
    # Nor is it in history: a resume from before it replays only the valid event.
    resumed = await open_stream(server.port, CHANNEL, token=token, last_event_id=before)
    replayed = await resumed.next_event()
    assert (replayed.id, replayed.json()) == (good.json()["id"], {"n": 1})
    await resumed.close()


def _hostile_ids(real_id: str) -> list[str]:
    prefix, _, _ = real_id.partition("-")
    return [
        f"{prefix}-\u00b2",  # a superscript two: `isdigit()` says yes, `int()` says no
        f"{prefix}-\u0663",  # an Arabic-Indic three: `int()` reads it as 3
        f"{prefix}-{'9' * 5000}",  # over `int()`'s 4,300-digit limit
        f"{'1' * 5000}-0",
        "-",
        "\u00b2-\u00b2",
    ]


async def test_a_hostile_last_event_id_gets_resync_then_live(
    server: ServerProcess, make_token: TokenFactory
) -> None:
    """Non-ASCII digits and 5,000-digit ids are unknown ids: `resync`, then live events."""
    token = make_token()
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        first = await _publish(http, token, b'{"data": 0}')
        for hostile in _hostile_ids(first.json()["id"]):
            stream = await open_stream(
                server.port, CHANNEL, token=token, query={"last_event_id": hostile}
            )
            resync = await stream.next_event()
            assert (resync.event, resync.json()) == ("resync", {}), hostile[:20]
            live = await _publish(http, token, b'{"data": "live"}')
            event = await stream.next_event()
            assert event.id == live.json()["id"]
            await stream.close()
        assert (await http.get("/healthz")).status_code == 200
    assert "Traceback" not in server.output()


async def test_max_connections_per_subject_answers_429_and_spares_other_subjects(
    start_server: ServerFactory, make_token: TokenFactory
) -> None:
    """Past MAX_CONNECTIONS_PER_SUBJECT one `sub` gets 429; another `sub` still streams."""
    server = start_server(MAX_CONNECTIONS_PER_SUBJECT="2")
    alice = make_token(sub="alice")
    streams = [await open_stream(server.port, CHANNEL, token=alice) for _ in range(2)]
    assert [s.status for s in streams] == [200, 200]
    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
        refused = await http.get(
            f"/channels/{CHANNEL}/events", headers={"Authorization": f"Bearer {alice}"}
        )
        assert refused.status_code == 429
        assert refused.json() == {"detail": "too many connections for this subject"}
        bob = await open_stream(server.port, CHANNEL, token=make_token(sub="bob"))
        assert bob.status == 200
        await bob.close()
        await streams.pop().close()

        async def admitted_again() -> bool:
            stream = await open_stream(server.port, CHANNEL, token=alice)
            await stream.close()
            return stream.status == 200

        async with asyncio.timeout(5):
            while not await admitted_again():
                await asyncio.sleep(0.05)
    for stream in streams:
        await stream.close()
