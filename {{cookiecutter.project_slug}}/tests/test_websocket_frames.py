"""WebSocket frame parsing and flood control, as units: the rules without a server."""

from __future__ import annotations

import json

import pytest

from {{ cookiecutter.project_slug }}.transports.ws_frames import (
    FrameError,
    Publish,
    Refresh,
    Subscribe,
    encode_frame,
    error_frame,
    parse_frame,
    ref_of,
)
from {{ cookiecutter.project_slug }}.transports.ws_ratelimit import FloodGuard, Verdict


def error_code(text: str) -> str:
    """The error code `parse_frame` answers `text` with."""
    with pytest.raises(FrameError) as error:
        parse_frame(text)
    return error.value.code


def test_valid_frames_parse_into_their_models() -> None:
    """Each client frame type parses, with defaults filled in and unknown fields ignored."""
    subscribe = parse_frame('{"type":"subscribe","channel":"room:1","ref":"a","extra":1}')
    assert subscribe == Subscribe(type="subscribe", channel="room:1", ref="a")
    publish = parse_frame('{"type":"publish","channel":"c","data":null}')
    assert isinstance(publish, Publish)
    assert (publish.event, publish.data) == ("message", None)
    assert isinstance(parse_frame('{"type":"refresh","token":"t"}'), Refresh)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        "null",
        '"x"',
        "{}",
        '{"type":1}',
        '{"type":["subscribe"]}',
        '{"type":"subscribe","channel":""}',
        '{"type":"subscribe","channel":"' + "c" * 129 + '"}',
        '{"type":"subscribe","channel":"c","last_event_id":5}',
        '{"type":"publish","channel":"c","event":"","data":1}',
        '{"type":"publish","channel":"c","event":"' + "e" * 65 + '","data":1}',
        '{"type":"publish","channel":"c","data":Infinity}',
        '{"type":"refresh","token":null}',
        '{"type":"pong","ref":{}}',
        "[" * 100_000,
    ],
)
def test_malformed_frames_are_bad_requests(text: str) -> None:
    """Anything that isn't a well-formed frame of a known type is `bad_request`."""
    assert error_code(text) == "bad_request"


def test_an_unknown_string_type_is_unknown_type_and_keeps_the_ref() -> None:
    """A string `type` the server doesn't speak is `unknown_type`, with the frame's `ref`."""
    with pytest.raises(FrameError) as error:
        parse_frame('{"type":"shout","ref":"r1"}')
    assert (error.value.code, error.value.ref) == ("unknown_type", "r1")


def test_error_details_name_the_field() -> None:
    """A field error says which field is wrong."""
    with pytest.raises(FrameError) as error:
        parse_frame('{"type":"subscribe","channel":"no spaces"}')
    assert "channel" in error.value.detail


def test_ref_of_reads_a_dropped_frames_ref_and_tolerates_garbage() -> None:
    """`ref_of` finds a string `ref`, and None for anything else."""
    assert ref_of('{"type":"pong","ref":"x"}') == "x"
    assert ref_of('{"ref":1}') is None
    assert ref_of("not json") is None


def test_server_frames_are_compact_json_with_ref_only_when_given() -> None:
    """Replies carry `ref` only when the client sent one."""
    assert encode_frame("refreshed") == '{"type":"refreshed"}'
    assert json.loads(error_frame("forbidden", "no", "r")) == {
        "type": "error",
        "code": "forbidden",
        "detail": "no",
        "ref": "r",
    }


# -- flood control ---------------------------------------------------------------


def test_a_new_connection_may_burst_twice_the_rate() -> None:
    """The bucket starts full: 2 x rate frames at once are allowed, the next is dropped."""
    guard = FloodGuard(10, now=0.0)
    assert [guard.check(0.0) for _ in range(20)] == [Verdict.ALLOW] * 20
    assert guard.check(0.0) is Verdict.DROP


def test_more_than_rate_drops_within_a_second_closes() -> None:
    """Drops 1..rate are answered; the (rate + 1)th within a second closes."""
    guard = FloodGuard(10, now=0.0)
    for _ in range(20):
        guard.check(0.0)
    verdicts = [guard.check(0.001 * n) for n in range(11)]
    assert verdicts == [Verdict.DROP] * 10 + [Verdict.CLOSE]


def test_the_bucket_refills_at_the_rate() -> None:
    """After an empty bucket, one token comes back every 1/rate seconds."""
    guard = FloodGuard(10, now=0.0)
    for _ in range(20):
        guard.check(0.0)
    assert guard.check(0.05) is Verdict.DROP
    assert guard.check(0.15) is Verdict.ALLOW


def test_drops_older_than_a_second_are_forgotten() -> None:
    """The drop count slides: `rate` drops, a pause, then `rate` more don't close."""
    guard = FloodGuard(10, now=0.0)
    for _ in range(20):
        guard.check(0.0)
    assert [guard.check(0.0) for _ in range(10)] == [Verdict.DROP] * 10
    # 1.5 s later the bucket holds 15 tokens again; spend them, then drop 10 more.
    assert [guard.check(1.5) for _ in range(15)] == [Verdict.ALLOW] * 15
    assert [guard.check(1.5) for _ in range(10)] == [Verdict.DROP] * 10


def test_a_client_at_the_rate_is_never_limited() -> None:
    """Frames exactly `rate` per second, for long, never find the bucket empty."""
    guard = FloodGuard(10, now=0.0)
    assert all(guard.check(n / 10) is Verdict.ALLOW for n in range(1000))
