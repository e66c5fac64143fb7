"""Property: whatever a client sends to `/ws`, the server answers by the protocol and stays healthy.

Random JSON, almost-valid frames, random text and random bytes go to one real
server. After each, a probe frame must be answered: the connection is still
there (or was closed with a close code the protocol defines), every frame the
server sent is a protocol frame, and the log never shows an unhandled exception.

Budget: `MAX_EXAMPLES` examples per run, each with `DEADLINE` to finish.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx2
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from conftest import TEST_SECRET, SharedServerFactory
from fuzz_values import hostile_ids, json_values, strict_json
from servers import ServerProcess
from ws_client import ws_url

MAX_EXAMPLES = 200
DEADLINE = timedelta(seconds=2)

SERVER_TYPES = {"message", "ping", "error", "subscribed", "unsubscribed", "published", "refreshed"}
ERROR_CODES = {"bad_request", "unknown_type", "forbidden", "rate_limited", "unavailable"}
# Close codes the protocol documents (docs/websocket.md, "Close codes").
DOCUMENTED_CLOSE_CODES = {1001, 1008, 1009, 1012, 1013}
CLIENT_TYPES = ["subscribe", "unsubscribe", "publish", "pong", "refresh"]

names = st.text(alphabet="abc:._-@ *é", max_size=12)
almost_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_TYPES) | json_values},
    optional={
        "channel": names | json_values,
        "last_event_id": st.text(max_size=12) | hostile_ids | json_values,
        "event": names | json_values,
        "data": json_values,
        "token": st.text(max_size=20) | json_values,
        "ref": st.text(max_size=8) | json_values,
    },
)
payloads: st.SearchStrategy[str | bytes] = st.one_of(
    almost_frames.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
)


class Fuzzer:
    """One connection to the server, reopened when the server closed it by the protocol."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        token = jwt.encode(
            {"sub": "fuzz", "exp": int(time.time()) + 3600, "subscribe": ["*"], "publish": ["*"]},
            TEST_SECRET,
            algorithm="HS256",
        )
        self.url = ws_url(server, token)
        self.ws: ClientConnection | None = None
        self._probes = itertools.count()
        self._stack = contextlib.ExitStack()

    def connection(self) -> ClientConnection:
        """The open connection, or a new one."""
        if self.ws is None:
            self.ws = self._stack.enter_context(
                connect(self.url, open_timeout=5, ping_interval=None, proxy=None)
            )
        return self.ws

    def close(self) -> None:
        """Close every connection opened."""
        self.ws = None
        self._stack.close()

    def exchange(self, payload: str | bytes) -> list[dict[str, Any]]:
        """Send `payload`, then the probe; every frame up to the probe's answer."""
        ws = self.connection()
        frames: list[dict[str, Any]] = []
        # A fresh ref each time: a random frame can't pass for the probe.
        probe = f"probe-{next(self._probes)}"
        try:
            ws.send(payload)
            ws.send(json.dumps({"type": "unsubscribe", "channel": "probe", "ref": probe}))
            while True:
                raw = ws.recv(timeout=5)
                assert isinstance(raw, str), "the server sends text frames only"
                frame = json.loads(raw)
                check_server_frame(frame)
                if frame.get("ref") == probe and frame["type"] == "unsubscribed":
                    return frames
                if frame["type"] != "ping":
                    frames.append(frame)
        except ConnectionClosed as closed:
            self.ws = None
            code = closed.rcvd.code if closed.rcvd is not None else None
            assert code in DOCUMENTED_CLOSE_CODES, f"closed with {code} after {payload!r}"
            return frames


def check_server_frame(frame: object) -> None:
    """`frame` is one of the protocol's server frames."""
    assert isinstance(frame, dict)
    assert frame.get("type") in SERVER_TYPES, frame
    if frame["type"] == "error":
        assert frame["code"] in ERROR_CODES, frame
        assert isinstance(frame["detail"], str)


def expected_error(payload: str | bytes) -> str | None:
    """The error code the protocol requires for `payload`, when it is fully determined."""
    if isinstance(payload, bytes):
        return "bad_request"
    try:
        value = strict_json(payload)
    except ValueError:
        return "bad_request"
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return "bad_request"
    if value["type"] not in CLIENT_TYPES:
        return "unknown_type"
    return None


@pytest.fixture(scope="module")
def fuzz_server(shared_server: SharedServerFactory) -> ServerProcess:
    """A server with a rate limit high enough that fuzzing speed isn't flooding."""
    return shared_server(WS_RATE_LIMIT="100000", HEARTBEAT_INTERVAL="5")


@pytest.fixture(scope="module")
def fuzzer(fuzz_server: ServerProcess) -> Iterator[Fuzzer]:
    """The fuzzing client, shared by every example."""
    client = Fuzzer(fuzz_server)
    yield client
    client.close()


@settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE, database=None)
@given(payload=payloads)
def test_any_frame_is_answered_by_the_protocol(fuzzer: Fuzzer, payload: str | bytes) -> None:
    """Random input gets protocol frames back (the right error code where it's determined)."""
    frames = fuzzer.exchange(payload)
    code = expected_error(payload)
    if code is not None and fuzzer.ws is not None:
        # Messages of channels that earlier examples subscribed to may arrive in between.
        replies = [f for f in frames if f["type"] != "message"]
        assert [f.get("code") for f in replies] == [code], (payload, frames)


def test_fuzzed_server_stays_healthy_and_logged_no_exception(
    fuzzer: Fuzzer, fuzz_server: ServerProcess
) -> None:
    """After the fuzzing: `/healthz` answers, and no traceback or ASGI error was logged."""
    # Module-scoped fixtures keep the order: this runs after the property test.
    fuzzer.close()
    assert httpx2.get(f"{fuzz_server.url}/healthz", timeout=5).status_code == 200
    output = fuzz_server.output()
    assert "Traceback" not in output
    assert "Exception in ASGI application" not in output
    assert " ERROR" not in output and "ERROR:" not in output
