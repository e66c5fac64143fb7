"""Property: whatever `Last-Event-ID` a client resumes from, the stream starts, with `resync`.

Random header values (any Latin-1 text a header can carry), random query
values (any Unicode) and ids built to trip a parser go to one real server whose
channel holds retained events. None of them is an id the server issued, so each
stream must answer 200 and begin with `retry:` then `event: resync`; the server
never logs a traceback.

Budget: `MAX_EXAMPLES` examples per run.
"""

from __future__ import annotations

import asyncio
import time

import httpx2
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TEST_SECRET, SharedServerFactory
from fuzz_values import hostile_ids
from servers import ServerProcess
from sse_client import open_stream

MAX_EXAMPLES = 100
CHANNEL = "room:fuzz"
FIRST_IDS: dict[int, str] = {}  # port -> the first id its server issued

header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    min_size=1,
    max_size=40,
).filter(lambda v: v.strip() == v)
query_values = st.text(min_size=1, max_size=40)


@pytest.fixture(scope="module")
def server(shared_server: SharedServerFactory) -> ServerProcess:
    """One server with a few retained events on `CHANNEL`."""
    process = shared_server()
    for n in range(3):
        response = httpx2.post(
            f"{process.url}/channels/{CHANNEL}/events",
            json={"data": n},
            headers={"Authorization": f"Bearer {_token()}"},
            timeout=5,
        )
        assert response.status_code == 202
        FIRST_IDS.setdefault(process.port, response.json()["id"])
    return process


def _token() -> str:
    claims = {"sub": "fuzz", "exp": int(time.time()) + 3600, "subscribe": ["*"], "publish": ["*"]}
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


async def _first_event(server: ServerProcess, *, header: str | None, query: str | None) -> str:
    stream = await open_stream(
        server.port,
        CHANNEL,
        token=_token(),
        last_event_id=header,
        query=None if query is None else {"last_event_id": query},
        encoding="latin-1",
    )
    try:
        assert stream.status == 200
        frame = await stream.next_event()
        assert frame.event is not None
        return frame.event
    finally:
        await stream.close()


def _latin1(value: str) -> bool:
    return all(ord(c) < 0x100 for c in value)


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None)
@given(value=header_values | hostile_ids.filter(_latin1))
def test_any_last_event_id_header_starts_the_stream_with_resync(
    server: ServerProcess, value: str
) -> None:
    """200, then `resync`: never a 500, never a replay from an id the server never issued."""
    assert asyncio.run(_first_event(server, header=value, query=None)) == "resync", value[:40]


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None)
@given(value=query_values | hostile_ids)
def test_any_last_event_id_query_starts_the_stream_with_resync(
    server: ServerProcess, value: str
) -> None:
    """The query parameter takes any Unicode; the answer is the same."""
    assert asyncio.run(_first_event(server, header=None, query=value)) == "resync", value[:40]


# After a real id's first part: digits `int()` misreads or can't read at all.
hostile_suffixes = st.text(alphabet="0123456789\u00b2\u0663\u00b9", min_size=1, max_size=8).filter(
    lambda v: not v.isascii()
) | st.just("9" * 5000)


@settings(max_examples=MAX_EXAMPLES // 2, deadline=None, database=None)
@given(suffix=hostile_suffixes)
def test_a_real_id_with_hostile_digits_starts_the_stream_with_resync(
    server: ServerProcess, suffix: str
) -> None:
    """`<the first part of a real id>-<digits int() misreads>`: `resync`, not a 500."""
    prefix = server_first_id(server).partition("-")[0]
    value = f"{prefix}-{suffix}"
    assert asyncio.run(_first_event(server, header=None, query=value)) == "resync", value[:40]


def server_first_id(server: ServerProcess) -> str:
    """The id of the first event retained on `CHANNEL`."""
    return FIRST_IDS[server.port]


def test_the_fuzzed_server_logged_no_exception(server: ServerProcess) -> None:
    """After the fuzzing: `/healthz` answers, and no traceback was logged."""
    assert httpx2.get(f"{server.url}/healthz", timeout=5).status_code == 200
    output = server.output()
    assert "Traceback" not in output and "Exception in ASGI application" not in output
