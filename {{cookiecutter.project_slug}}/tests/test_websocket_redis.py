"""`WS /ws` through a Redis outage: `unavailable` answers, open sockets stay, delivery resumes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx2

from conftest import ServerFactory, TokenFactory
from redis_server import start_redis_server
from ws_client import open_ws, recv_frame, request, subscribe


async def test_redis_outage_is_answered_unavailable_and_the_socket_stays(
    start_server: ServerFactory, make_token: TokenFactory, tmp_path: Path
) -> None:
    """While Redis is down, publish and subscribe get `unavailable`; afterwards all works again."""
    redis = start_redis_server(tmp_path / "redis")
    try:
        server = start_server(REDIS_URL=redis.url, HEARTBEAT_INTERVAL="5")
        async with await open_ws(server, make_token()) as ws:
            await subscribe(ws, "room:live")
            redis.stop()
            publish = {"type": "publish", "channel": "room:other", "data": 1}
            async with asyncio.timeout(10):
                # A publish already under way when Redis died may still go through.
                while (reply := await request(ws, publish))["type"] != "error":
                    pass
            assert reply["code"] == "unavailable"
            resume = {"type": "subscribe", "channel": "room:2", "last_event_id": "0-0"}
            assert (await request(ws, resume))["code"] == "unavailable"

            redis.start()
            async with httpx2.AsyncClient(base_url=server.url) as http, asyncio.timeout(15):
                while (await http.get("/readyz")).status_code != 200:
                    await asyncio.sleep(0.1)
            # Live delivery resumes on the subscription made before the outage.
            await ws.send(json.dumps({"type": "publish", "channel": "room:live", "data": 2}))
            frames = [await recv_frame(ws), await recv_frame(ws)]
            assert sorted(f["type"] for f in frames) == ["message", "published"]
            assert len({f["id"] for f in frames}) == 1
    finally:
        redis.stop()
