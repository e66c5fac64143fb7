"""A publish answered 503 after a Redis timeout may still be stored: retrying with its key is safe.

A Redis server of this test's own is stopped (SIGSTOP) for longer than the
service's command timeout: the publish's script sits in the server's socket
buffer, the service answers 503, and the script runs once the server is
continued (SIGCONT). The retry with the same `Idempotency-Key` is answered with
that stored event's id, and the stream holds the event once.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.broadcast.redis_streams import key_for
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import TokenFactory
from redis_server import RedisServerProcess, start_redis_server
from servers import wait_for


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A Redis-protocol server of this test's own, killed by pid afterwards."""
    server = start_redis_server(tmp_path / "redis")
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_a_retry_after_a_503_does_not_duplicate_the_event(
    own_redis: RedisServerProcess,
    settings_factory: Callable[..., Settings],
    make_token: TokenFactory,
) -> None:
    """503 (stored anyway once Redis resumes), then the retry: 202 with the stored id, one event."""
    assert own_redis.process is not None
    pid = own_redis.process.pid
    admin = redis.Redis.from_url(own_redis.url, socket_timeout=10)
    token, channel = make_token(), f"room:{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "payment-7"}
    url = f"/channels/{channel}/events"
    stream = key_for(channel)
    with TestClient(create_app(settings_factory(redis_url=own_redis.url))) as client:
        # Loads the publish script into Redis, so that the stopped call is the script itself.
        warm = client.post(url, json={"data": 0}, headers={"Authorization": f"Bearer {token}"})
        assert warm.status_code == 202
        channel = f"room:{uuid.uuid4().hex[:12]}"
        url, stream = f"/channels/{channel}/events", key_for(channel)
        os.kill(pid, signal.SIGSTOP)
        try:
            answered = client.post(url, json={"data": "charge"}, headers=headers)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert answered.status_code == 503, answered.text
        assert answered.json()["detail"].startswith("broadcaster unavailable")
        # The 503 was honest about not knowing: the event is stored after all.
        wait_for(lambda: admin.xlen(stream) == 1, 10, "the publish never reached Redis")
        stored_id = admin.xrange(stream)[0][0].decode()

        def retried() -> bool:
            response = client.post(url, json={"data": "charge"}, headers=headers)
            if response.status_code == 503:
                return False  # not reconnected yet: a client would retry again
            assert response.status_code == 202, response.text
            assert response.json() == {"id": stored_id, "channel": channel}
            return True

        wait_for(retried, 15, "the retry was never answered 202")
        assert admin.xlen(stream) == 1
        # Everyone else is fine: a new publish is a new event.
        plain = {"Authorization": f"Bearer {token}"}
        fresh = client.post(url, json={"data": "next"}, headers=plain)
        assert fresh.status_code == 202 and fresh.json()["id"] != stored_id
    admin.close()
