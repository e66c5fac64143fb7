"""The load test's event-stream parser: any split of the bytes gives the same events."""

from __future__ import annotations

from loadtest.sse import EventStreamParser

STREAM = (
    b"retry: 3000\n\n"
    b'id: 1\nevent: loadtest\ndata: {"s":0}\n\n'
    b": ping\n\n"
    b"id: 2\nevent: loadtest\ndata: first\ndata:second\n\n"
    b"event: resync\ndata: {}\n\n"
)
EVENTS = [b'{"s":0}', b"first\nsecond", b"{}"]


def parse(pieces: list[bytes]) -> tuple[list[bytes], int]:
    """Events and comment count from feeding `pieces` in order."""
    events: list[bytes] = []
    comments = []
    parser = EventStreamParser(events.append, lambda: comments.append(1))
    for piece in pieces:
        parser.feed(piece)
    return events, len(comments)


def test_events_and_comments_are_parsed() -> None:
    """`data:` lines make events (joined by newlines); `:` lines are heartbeats."""
    assert parse([STREAM]) == (EVENTS, 1)


def test_any_split_of_the_stream_gives_the_same_events() -> None:
    """The socket may cut the stream anywhere, even inside a line ending."""
    for stream in (STREAM, STREAM.replace(b"\n", b"\r\n"), STREAM.replace(b"\n", b"\r")):
        for cut in range(1, len(stream)):
            assert parse([stream[:cut], stream[cut:]]) == (EVENTS, 1), (stream, cut)
        assert parse([bytes([b]) for b in stream]) == (EVENTS, 1)


def test_an_unfinished_event_is_not_dispatched() -> None:
    """An event counts only once its blank line arrived."""
    assert parse([b"data: x\n"]) == ([], 0)
