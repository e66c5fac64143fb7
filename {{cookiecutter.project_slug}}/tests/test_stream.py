"""The connection policy both transports share: writing, stalls, slow consumers, closing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from starlette.types import Message, Receive, Send

from {{ cookiecutter.project_slug }}.auth import Principal
from {{ cookiecutter.project_slug }}.connections import CloseReason
from {{ cookiecutter.project_slug }}.events import Event
from {{ cookiecutter.project_slug }}.metrics import Metrics
from {{ cookiecutter.project_slug }}.transports.stream import StreamConnection, StreamState

TRANSPORT = "test"
INTERVAL = 1.0  # heartbeat interval: the stall limit is twice that
QUEUE_SIZE = 4
GOODBYE: Message = {"type": "test.goodbye"}
GONE: Message = {"type": "test.gone"}


class Socket:
    """A client socket: records what is sent, or holds each send until allowed."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.pending = 0  # sends waiting for a permit
        self._permits: asyncio.Queue[None] | None = None

    def stall(self) -> None:
        """From now on each send waits for a permit (the client stopped reading)."""
        self._permits = asyncio.Queue()

    def allow(self, sends: int = 1) -> None:
        """Let that many held sends complete."""
        assert self._permits is not None
        for _ in range(sends):
            self._permits.put_nowait(None)

    async def send(self, message: Message) -> None:
        if self._permits is not None:
            self.pending += 1
            try:
                await self._permits.get()
            finally:
                self.pending -= 1
        self.sent.append(message)

    def texts(self) -> list[object]:
        return [m.get("text", m["type"]) for m in self.sent]


class Scripted(StreamConnection[str]):
    """The smallest transport: an item's text is its frame."""

    transport = TRANSPORT
    label = "test"

    def __init__(self, *, shutdown_grace: float = 60.0) -> None:
        super().__init__(
            Principal(sub="alice", exp=time.time() + 3600, subscribe=("*",), publish=("*",)),
            queue_size=QUEUE_SIZE,
            heartbeat_interval=INTERVAL,
            shutdown_grace=shutdown_grace,
            metrics=Metrics([TRANSPORT]),
        )
        self.keep_alives = 0
        self.swallow_cancellation = False  # a read that catches its cancellation
        self.served = 0
        self.failures: list[BaseException] = []

    def _served(self) -> None:
        self.served += 1

    async def _failed(self, error: BaseException, send: Send) -> None:
        self.failures.append(error)

    async def _read(self, receive: Receive) -> None:
        while True:
            try:
                message = await receive()
            except asyncio.CancelledError:
                if not self.swallow_cancellation:
                    raise
                return
            if message is GONE:
                self.close(CloseReason.SHUTDOWN)
                return
            if message["type"] == "test.bug":
                raise RuntimeError("a bug in reading")

    def describe(self) -> str:
        return "sub='alice'"

    def _next_message(self) -> tuple[Message, int]:
        item = self.outbox.queued.popleft()
        if self.outbox.uncounted:
            self.outbox.forget(item)
        if isinstance(item, Event):
            return {"type": "test.send", "text": item.id}, 1
        return {"type": "test.send", "text": item}, 0

    def _still_due(self, item: Event | str) -> bool:
        return isinstance(item, str)

    async def _say_goodbye(self, send: Send) -> None:
        await send(GOODBYE)
        self.writes += 1

    def _keep_alive(self, now: float) -> None:
        self.keep_alives += 1

    def _lost(self, channel: str) -> None:
        self.outbox.push(f"lost {channel}")

    def slow_drops(self) -> float | None:
        return self._metrics.registry.get_sample_value(
            "realtime_slow_consumer_disconnects_total", {"transport": TRANSPORT}
        )

    def delivered(self) -> int:
        return self._metrics.events_delivered[TRANSPORT].count


class CutsOffSlow(Scripted):
    """A transport whose slow consumers get no goodbye (as SSE's)."""

    cut_off_slow_consumers = True


class WaitsForGoodbye(Scripted):
    """A transport that leaves an unread goodbye to the server's timeouts (as WebSocket's)."""

    cut_off_unread_goodbyes = False


def _state(connection: Scripted) -> StreamState:
    # Read through a call: mypy would otherwise keep the state narrowed across awaits.
    return connection.state


def _event(n: int) -> Event:
    return Event("room", str(n), "message", b"0")


async def _until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0)


@pytest.fixture
def socket() -> Socket:
    return Socket()


@pytest.fixture
async def started() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Writers a test started; cancelled at its end whatever happened."""
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


def _start(
    connection: Scripted, socket: Socket, started: list[asyncio.Task[None]]
) -> asyncio.Task[None]:
    writer = connection._start_writer(socket.send)
    started.append(writer)
    return writer


async def test_items_are_written_in_order_and_only_events_are_counted(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """The writer sends each item in queue order; the delivery tally counts events only."""
    connection = Scripted()
    _start(connection, socket, started)
    connection.outbox.deliver(_event(1))
    connection.outbox.push("reply")
    connection.outbox.deliver(_event(2))
    await _until(lambda: len(socket.sent) == 3)
    assert socket.texts() == ["1", "reply", "2"]
    await _until(lambda: connection.delivered() == 2)


async def test_close_flushes_what_is_still_due_then_says_goodbye(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """Closing drops what is no longer due, writes the rest, then the goodbye: CLOSED."""
    connection = Scripted()
    connection.outbox.deliver(_event(1))
    connection.outbox.push("last reply")
    connection.close(CloseReason.SHUTDOWN)
    assert connection.state is StreamState.CLOSING
    writer = _start(connection, socket, started)
    await asyncio.wait_for(writer, 5)
    assert socket.texts() == ["last reply", "test.goodbye"]
    assert _state(connection) is StreamState.CLOSED
    assert connection.reason is CloseReason.SHUTDOWN
    assert connection.delivered() == 0


async def test_only_the_first_close_counts() -> None:
    """A second close, for another reason, changes nothing."""
    connection = Scripted()
    connection.close(CloseReason.TOKEN_EXPIRED)
    connection.close(CloseReason.SHUTDOWN)
    assert connection.reason is CloseReason.TOKEN_EXPIRED
    assert connection.state is StreamState.CLOSING


async def test_a_client_that_is_gone_gets_no_goodbye(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """Ending without a goodbye (the client went away) writes no goodbye: CLOSED."""
    connection = Scripted()
    connection.outbox.push("reply")
    connection._end(None, "client gone", goodbye=False)
    writer = _start(connection, socket, started)
    await asyncio.wait_for(writer, 5)
    assert socket.sent == [{"type": "test.send", "text": "reply"}]
    assert connection.state is StreamState.CLOSED


async def test_a_write_pending_past_the_stall_limit_drops_a_slow_consumer(
    socket: Socket, started: list[asyncio.Task[None]], caplog: pytest.LogCaptureFixture
) -> None:
    """A send that hasn't completed across 2 x the interval of ticks: dropped, counted, logged."""
    connection = Scripted()
    socket.stall()
    _start(connection, socket, started)
    connection.outbox.deliver(_event(1))
    await _until(lambda: socket.pending == 1)
    connection.tick(100.0)
    connection.tick(100.0 + 2 * INTERVAL)
    assert connection.state is StreamState.OPEN  # not over the limit yet
    with caplog.at_level(logging.WARNING):
        connection.tick(100.0 + 2 * INTERVAL + 0.1)
    assert _state(connection) is StreamState.CLOSING
    assert connection.reason is CloseReason.SLOW_CONSUMER
    assert connection.slow_drops() == 1
    assert "dropping a slow test client (sub='alice'): a write has waited" in caplog.text


async def test_writes_that_keep_completing_are_not_a_stall(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """A slow reader whose sends each complete within the limit stays connected."""
    connection = Scripted()
    socket.stall()
    _start(connection, socket, started)
    for n in range(3):
        connection.outbox.deliver(_event(n))
    await _until(lambda: socket.pending == 1)
    now = 100.0
    for sent in range(1, 3):
        connection.tick(now)
        socket.allow()

        def written(sent: int = sent) -> bool:
            return len(socket.sent) == sent and socket.pending == 1

        await _until(written)
        now += 1.5 * INTERVAL
    connection.tick(now)
    assert connection.state is StreamState.OPEN
    assert connection.slow_drops() == 0


async def test_a_closing_client_whose_writes_stall_is_cut_off(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """A stall while closing stops the writer at once: CUT_OFF, nothing more sent."""
    connection = Scripted()
    socket.stall()
    writer = _start(connection, socket, started)
    connection.outbox.push("reply")
    await _until(lambda: socket.pending == 1)
    connection.close(CloseReason.SHUTDOWN)
    connection.tick(100.0)
    connection.tick(100.0 + 2 * INTERVAL + 0.1)
    assert connection.state is StreamState.CUT_OFF
    await asyncio.wait({writer}, timeout=5)
    assert writer.cancelled() and socket.sent == []


async def test_a_closing_client_that_does_not_read_is_cut_off_after_the_close_limit(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """Without any tick, the close limit (half the shutdown grace here) cuts the writer off."""
    connection = Scripted(shutdown_grace=0.02)
    socket.stall()
    writer = _start(connection, socket, started)
    connection.outbox.push("reply")
    await _until(lambda: socket.pending == 1)
    connection.close(CloseReason.SHUTDOWN)
    await asyncio.wait({writer}, timeout=5)
    assert writer.cancelled()
    assert connection.state is StreamState.CUT_OFF


async def test_a_transport_may_wait_for_a_late_reader_to_take_its_goodbye(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """Without `cut_off_unread_goodbyes`, a client that catches up still gets the goodbye."""
    connection = WaitsForGoodbye(shutdown_grace=0.02)
    socket.stall()
    writer = _start(connection, socket, started)
    connection.outbox.push("reply")
    await _until(lambda: socket.pending == 1)
    connection.close(CloseReason.SHUTDOWN)
    assert connection._cut_off_timer is None
    socket.allow(2)
    await asyncio.wait_for(writer, 5)
    assert socket.texts() == ["reply", "test.goodbye"]
    assert _state(connection) is StreamState.CLOSED


async def test_an_overflowing_outbox_drops_the_slow_consumer_once() -> None:
    """One event past the queue size closes the connection as a slow consumer, counted once."""
    connection = Scripted()
    for n in range(QUEUE_SIZE + 3):
        connection.outbox.deliver(_event(n))
    assert connection.state is StreamState.CLOSING
    assert connection.reason is CloseReason.SLOW_CONSUMER
    assert connection.slow_drops() == 1


async def test_a_transport_may_cut_slow_consumers_off_without_a_goodbye() -> None:
    """With `cut_off_slow_consumers`, a slow consumer goes straight to CUT_OFF."""
    connection = CutsOffSlow()
    for n in range(QUEUE_SIZE + 1):
        connection.outbox.deliver(_event(n))
    assert connection.state is StreamState.CUT_OFF
    assert connection.slow_drops() == 1


async def test_keep_alive_runs_while_open_and_stops_once_closing(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """The transport's keep-alive runs each tick while open, a write pending or not."""
    connection = Scripted()
    connection.tick(1.0)
    assert connection.keep_alives == 1
    socket.stall()
    _start(connection, socket, started)
    connection.outbox.push("reply")
    await _until(lambda: socket.pending == 1)
    connection.tick(2.0)
    assert connection.keep_alives == 2
    connection.close(CloseReason.SHUTDOWN)
    connection.tick(3.0)
    assert connection.keep_alives == 2


async def test_no_keep_alive_for_a_client_dropped_as_slow(
    socket: Socket, started: list[asyncio.Task[None]]
) -> None:
    """The tick that drops a stalled client does nothing else."""
    connection = Scripted()
    socket.stall()
    _start(connection, socket, started)
    connection.outbox.push("reply")
    await _until(lambda: socket.pending == 1)
    connection.tick(100.0)
    connection.tick(100.0 + 2 * INTERVAL + 0.1)
    assert connection.keep_alives == 1
    assert connection.reason is CloseReason.SLOW_CONSUMER


async def test_lost_continuity_goes_through_the_transport() -> None:
    """The outbox's `lost` reaches the transport, which queues its own marker."""
    connection = Scripted()
    connection.outbox.lost("room")
    assert connection.outbox.take() == ["lost room"]


@pytest.mark.parametrize(
    ("start", "target", "expected"),
    [
        (StreamState.OPEN, StreamState.CLOSED, "'closing'"),
        (StreamState.OPEN, StreamState.CUT_OFF, "'closing'"),
        (StreamState.CLOSED, StreamState.CLOSING, "'open'"),
        (StreamState.CUT_OFF, StreamState.CLOSING, "'open'"),
        (StreamState.CUT_OFF, StreamState.CLOSED, "'closing'"),
    ],
)
async def test_a_bad_state_transition_raises_naming_what_was_expected(
    start: StreamState, target: StreamState, expected: str
) -> None:
    """States only move forward; a move from the wrong state says which was expected."""
    connection = Scripted()
    connection.state = start
    with pytest.raises(RuntimeError, match=f"expected the connection to be {expected}, not"):
        connection._enter(target)
    assert connection.state is start


class Client:
    """What a client sends: the `receive` side of a connection."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def receive(self) -> Message:
        return await self.messages.get()


async def _serving(connection: Scripted, socket: Socket) -> asyncio.Task[None]:
    """`connection` served in a task of its own (a client that sends nothing), once it reads."""
    task = asyncio.create_task(connection.serve(Client().receive, socket.send))
    await _until(lambda: connection._reading is task)
    return task


async def test_serve_reads_in_its_own_task_and_interrupts_the_read_once_the_writer_ends(
    socket: Socket,
) -> None:
    """Closing ends the writer; the read is interrupted and the task isn't left cancelled."""
    connection = Scripted()
    task = await _serving(connection, socket)
    connection.close(CloseReason.SHUTDOWN)
    async with asyncio.timeout(5):
        await task
    assert task.cancelling() == 0
    assert socket.sent[-1] == GOODBYE
    assert connection.state is StreamState.CLOSED
    assert (connection.served, connection.failures) == (1, [])


async def test_serve_goes_on_in_a_task_whose_read_was_interrupted(socket: Socket) -> None:
    """After `serve` the caller's task awaits as usual: the interruption was taken back."""
    connection = Scripted()

    async def serve_then_wait() -> str:
        await connection.serve(Client().receive, socket.send)
        await asyncio.sleep(0.01)  # would raise if the cancellation were still pending
        return "went on"

    task = asyncio.create_task(serve_then_wait())
    await _until(lambda: connection._reading is task)
    connection.close(CloseReason.SHUTDOWN)
    async with asyncio.timeout(5):
        assert await task == "went on"


async def test_serve_takes_back_a_cancellation_the_read_swallowed(socket: Socket) -> None:
    """A read that catches the interruption and returns leaves no cancellation behind."""
    connection = Scripted()
    connection.swallow_cancellation = True
    task = await _serving(connection, socket)
    connection.close(CloseReason.SHUTDOWN)
    async with asyncio.timeout(5):
        await task
    assert task.cancelling() == 0


async def test_serve_lets_someone_elses_cancellation_through(socket: Socket) -> None:
    """Cancelling the serving task cancels it, and stops its writer."""
    connection = Scripted()
    task = await _serving(connection, socket)
    writer = connection._writer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await task
    assert writer is not None and writer.done()
    assert connection.served == 1


async def test_serve_ends_once_the_client_goes_and_the_writer_has_finished(
    socket: Socket,
) -> None:
    """A read that ends the connection itself is not interrupted; the writer finishes."""
    connection = Scripted()
    client = Client()
    task = asyncio.create_task(connection.serve(client.receive, socket.send))
    await _until(lambda: connection._reading is task)
    client.messages.put_nowait(GONE)
    async with asyncio.timeout(5):
        await task
    assert not connection._read_interrupted
    assert socket.sent[-1] == GOODBYE


async def test_serve_hands_what_the_read_raised_to_the_transport(socket: Socket) -> None:
    """A read that fails is a bug: the writer is stopped, `_failed` gets it, `_served` runs."""
    connection = Scripted()
    client = Client()
    task = asyncio.create_task(connection.serve(client.receive, socket.send))
    await _until(lambda: connection._reading is task)
    writer = connection._writer
    client.messages.put_nowait({"type": "test.bug"})
    async with asyncio.timeout(5):
        await task
    assert [str(error) for error in connection.failures] == ["a bug in reading"]
    assert writer is not None and writer.cancelled()
    assert connection.served == 1


async def test_a_cut_off_interrupts_the_read(socket: Socket) -> None:
    """A closing client whose goodbye doesn't go out is cut off: the read ends too."""
    connection = Scripted()
    socket.stall()
    task = await _serving(connection, socket)
    connection.close(CloseReason.SHUTDOWN)
    await _until(lambda: socket.pending == 1)
    connection.tick(100.0)
    connection.tick(100.0 + 2 * INTERVAL + 0.1)
    async with asyncio.timeout(5):
        await task
    assert connection.state is StreamState.CUT_OFF
    assert task.cancelling() == 0
