"""The connection policy every transport shares, written once.

One writer task per connection drains its outbox onto the socket; it is the
only task that ever waits on a slow client, so a client that stops reading
holds up nobody but itself. (The client's side is read in the server's own
task for the connection, in `serve`, not in a task of its own.) Such a client
is noticed two ways: its outbox overflows (`OUTBOUND_QUEUE_SIZE` live events
waiting), or one write has been pending for more than 2 x `HEARTBEAT_INTERVAL`
(the socket buffers are full and the server waits for them to drain). Either
way it is dropped as a slow consumer and counted.

Closing flushes what is still due, then the transport's goodbye; a client that
doesn't read even that is cut off after `close_limit` (where the transport
asks for it). The connection's closing state is one `StreamState`.

A transport supplies only how it reads the client, how queued items become
ASGI messages, which items are still due once closing, its goodbye, its
keep-alive and how it describes itself in logs.

Per message, the writer does nothing besides the transport's `_next_message`
(a plain call), the ASGI `send` and two counter increments: the registry's
ticker, not the writer, notices a write that doesn't complete (the counter
stands still while a message is being written).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from starlette.types import Message, Receive, Send

from ..auth import Principal
from ..connections import CloseReason, Connection
from ..events import Event
from ..metrics import Metrics
from ..outbox import Outbox

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StreamState(enum.Enum):
    """Where a connection is in its life; it only ever moves forward."""

    OPEN = "open"
    CLOSING = "closing"  # flushing what is still due, then the goodbye
    CLOSED = "closed"  # the goodbye was written, or the client is gone
    CUT_OFF = "cut off"  # the writer was stopped mid-write: nothing more is sent


# Looked up once per message by every writer: a module global is several times
# cheaper than an attribute of the enum class.
_OPEN = StreamState.OPEN

# Each state, and the states it may be entered from.
_ENTERED_FROM: dict[StreamState, tuple[StreamState, ...]] = {
    StreamState.OPEN: (),
    StreamState.CLOSING: (StreamState.OPEN,),
    StreamState.CLOSED: (StreamState.CLOSING,),
    StreamState.CUT_OFF: (StreamState.CLOSING,),
}


class StreamConnection(Connection, Generic[T]):
    """An open connection's outbox, writer and timers; `T` is the transport's control item."""

    label: ClassVar[str]  # the transport as log lines name it
    # Whether a slow consumer is cut off at once, rather than sent its goodbye.
    cut_off_slow_consumers: ClassVar[bool] = False
    # Whether a closing client that doesn't read its last bytes is cut off after
    # `_close_limit`, rather than left to the server's own timeouts.
    cut_off_unread_goodbyes: ClassVar[bool] = True
    # What `send` raises once the client is gone: the writer then ends quietly,
    # with no goodbye. Anything else it raises is a bug, left to `serve` to log.
    client_gone_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(
        self,
        principal: Principal,
        *,
        queue_size: int,
        heartbeat_interval: float,
        shutdown_grace: float,
        metrics: Metrics,
    ) -> None:
        super().__init__(principal)
        self.outbox: Outbox[T] = Outbox(queue_size, self._overflowed, self._lost)
        self.state = StreamState.OPEN
        self.reason: CloseReason | None = None  # None: closed for a transport's own cause
        self.writes = 0  # sends completed; the ticker watches it move
        self._queue_size = queue_size
        self._interval = heartbeat_interval
        self._stall_limit = 2 * heartbeat_interval
        # Connections ending on shutdown get this long to flush, well inside the grace.
        self._close_limit = min(self._stall_limit, shutdown_grace / 2)
        self._metrics = metrics
        self._why = ""
        self._goodbye = True  # whether the writer ends with the transport's goodbye
        self._writing = False  # the writer is writing (not waiting for its outbox)
        self._stalled_at = -1  # `writes` when the ticker first saw the current write pending
        self._stalled_since = 0.0
        self._writer: asyncio.Task[None] | None = None
        # Done once the writer has ended (or `_stop_waiting` was called): what
        # `serve` waits on. One future per connection, where `asyncio.wait`
        # would keep a waiter, a set and a callback per task alive for hours.
        self._ended: asyncio.Future[None] | None = None
        self._cut_off_timer: asyncio.TimerHandle | None = None
        self._reading: asyncio.Task[Any] | None = None  # the task in `_read`, while it is
        self._read_interrupted = False

    # -- what a transport supplies ---------------------------------------------

    @abstractmethod
    def describe(self) -> str:
        """Who this is, for log lines: `sub=..., channel=...`."""

    @abstractmethod
    async def _read(self, receive: Receive) -> None:
        """Read the client's messages until it goes, or until the transport stops reading.

        Interrupted (cancelled) once the writer has ended. Whatever it raises
        besides is a bug, which `serve` hands to `_failed`.
        """

    @abstractmethod
    def _served(self) -> None:
        """Called once serving has ended, however it ended: free what the connection holds."""

    @abstractmethod
    async def _failed(self, error: BaseException, send: Send) -> None:
        """Report a bug (ours, or a middleware's `send`) that ended the connection, and end it.

        Logged here, once, with what only the transport knows: raised, it would
        reach the middleware and the server, which log it again without context.
        """

    @abstractmethod
    def _next_message(self) -> tuple[Message, int]:
        """The next ASGI message, made from the front of `outbox.queued` (never empty).

        Takes the items it is made of off the outbox; returns it with how many
        events it carries. A plain method, not a coroutine: the writer calls it
        once per message, and a coroutine per call costs more than the rest of
        the writer's own work for a WebSocket frame.
        """

    @abstractmethod
    def _still_due(self, item: Event | T) -> bool:
        """Whether `item`, queued when closing began, is still written before the goodbye."""

    @abstractmethod
    async def _say_goodbye(self, send: Send) -> None:
        """Write the last message, saying why the connection ends."""

    @abstractmethod
    def _keep_alive(self, now: float) -> None:
        """Called each tick while open, a write pending or not: heartbeats, idle checks."""

    @abstractmethod
    def _lost(self, channel: str) -> None:
        """Events on `channel` may be missing before what follows: tell the client."""

    async def _say_hello(self, send: Send) -> None:
        """Write what opens the stream, before any item."""

    def _closing(self) -> None:
        """Called once closing has begun (the outbox is already closed)."""

    def _stop(self) -> None:
        """Stop the connection's tasks: it has been cut off."""
        if self._writer is not None:
            self._writer.cancel()
        self._interrupt_reading()

    # -- state -----------------------------------------------------------------

    def _enter(self, state: StreamState) -> None:
        expected = _ENTERED_FROM[state]
        if self.state not in expected:
            raise RuntimeError(
                f"can't become {state.value!r}: expected the connection to be "
                f"{' or '.join(repr(s.value) for s in expected)}, not {self.state.value!r}"
            )
        self.state = state

    # -- called by the registry ------------------------------------------------

    def tick(self, now: float) -> None:
        """Drop the client when a write hasn't completed in time; else keep it alive."""
        if not self._writing:
            self._stalled_at = -1
        elif self.writes != self._stalled_at:
            self._stalled_at, self._stalled_since = self.writes, now
        elif now - self._stalled_since > self._stall_limit:
            self._drop_slow(f"a write has waited over {self._stall_limit:g} s")
            return
        if self.state is StreamState.OPEN:
            self._keep_alive(now)

    def close(self, reason: CloseReason) -> None:
        """End the connection for `reason`; never blocks."""
        self._end(reason, reason.value)

    # -- closing ---------------------------------------------------------------

    def _end(self, reason: CloseReason | None, why: str, *, goodbye: bool = True) -> bool:
        """Begin closing, unless already closing; returns whether it began.

        `goodbye=False`: the client is gone, so nothing more is written.
        """
        if self.state is not StreamState.OPEN:
            if reason is CloseReason.SLOW_CONSUMER and self.state is StreamState.CLOSING:
                self._cut_off()  # a closing connection whose last writes don't complete
            return False
        self._enter(StreamState.CLOSING)
        self.reason, self._why, self._goodbye = reason, why, goodbye
        self.outbox.close()
        self._closing()
        if reason is CloseReason.SLOW_CONSUMER and self.cut_off_slow_consumers:
            self._cut_off()
        elif self._writer is not None and not self._writer.done():
            self._arm_cut_off()
        return True

    def _drop_slow(self, why: str) -> None:
        if self.state is StreamState.OPEN:
            self._metrics.slow_consumer_disconnects.labels(self.transport).inc()
            logger.warning("dropping a slow %s client (%s): %s", self.label, self.describe(), why)
        self.close(CloseReason.SLOW_CONSUMER)

    def _overflowed(self) -> None:
        self._drop_slow(f"its queue of {self._queue_size} events overflowed")

    def _arm_cut_off(self) -> None:
        # The writer flushes what is due and says goodbye, unless the client
        # stopped reading: then it is cut off after `_close_limit`.
        if not self.cut_off_unread_goodbyes:
            return
        loop = asyncio.get_running_loop()
        self._cut_off_timer = loop.call_later(self._close_limit, self._cut_off_unread)

    def _cut_off_unread(self) -> None:
        if self.state is StreamState.CLOSING:
            logger.info(
                "cutting off a %s client (%s) that isn't reading its last bytes (%s)",
                self.label,
                self.describe(),
                self._why,
            )
            self._cut_off()

    def _cut_off(self) -> None:
        self._enter(StreamState.CUT_OFF)
        self.outbox.close()
        self._stop()

    # -- serving ---------------------------------------------------------------

    async def serve(self, receive: Receive, send: Send) -> None:
        """Serve the connection until it ends: write from a task of its own, read in this one.

        Reading in the caller's task (the server's, for this connection) spares
        a task per connection, and serving in this one coroutine spares a frame:
        about 0.5 KiB of each idle client together. Once the writer has ended,
        the read is cancelled and that cancellation taken back, so the caller
        carries on as usual. What either raises besides is a bug, handed to
        `_failed`; `_served` runs however serving ends.
        """
        task = asyncio.current_task()
        assert task is not None, "serve runs in a task"
        writer = self._start_writer(send)
        error: BaseException | None = None
        try:
            self._reading = task
            try:
                await self._read(receive)
            except asyncio.CancelledError:
                # Ours, unless someone else cancelled the task as well.
                if not self._read_interrupted or task.uncancel():
                    raise
            except Exception as exc:
                error = exc
            else:
                if self._read_interrupted:
                    task.uncancel()  # the read swallowed our cancellation
            finally:
                self._reading = None
            if error is None:
                await self._until_ended()
        finally:
            try:
                writer.cancel()
                await asyncio.wait((writer,))
                if error is None and not writer.cancelled():
                    error = writer.exception()
                if error is not None:
                    await self._failed(error, send)
            finally:
                self._served()

    def _interrupt_reading(self) -> None:
        """Stop `_read`: the writer has ended, or the connection is cut off."""
        reading = self._reading
        # A read that ends the connection itself sees so when it returns.
        if reading is None or self._read_interrupted or reading is asyncio.current_task():
            return
        self._read_interrupted = True
        reading.cancel()

    # -- writing ---------------------------------------------------------------

    def _start_writer(self, send: Send) -> asyncio.Task[None]:
        """Start the writer task; a connection closed before it started gets its cut-off timer."""
        self._ended = asyncio.get_running_loop().create_future()
        self._writer = asyncio.create_task(self._write(send), name=f"{self.transport}-writer")
        if self.state is StreamState.CLOSING:
            self._arm_cut_off()
        return self._writer

    def _until_ended(self) -> asyncio.Future[None]:
        """Done once the writer has ended, or `_stop_waiting` was called.

        A future, not a coroutine: a coroutine's frame would stay alive for the
        connection's whole life.
        """
        assert self._ended is not None, "the writer hasn't been started"
        return self._ended

    def _stop_waiting(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    async def _write(self, send: Send) -> None:
        # One coroutine from hello to goodbye: each frame nested here would stay
        # alive, once per idle connection, for as long as the connection lasts.
        #
        # The writer only ever suspends in a `send` or waiting for its outbox, so
        # `_writing` is true but while it waits: set per wake-up, not per message.
        try:
            delivered = self._metrics.events_delivered[self.transport]
            self._writing = True
            await self._say_hello(send)
            outbox = self.outbox
            queued = outbox.queued
            while True:
                if not queued:
                    if outbox.closed:
                        break
                    self._writing = False
                    await outbox.wait()
                    self._writing = True
                    continue
                if self.state is not _OPEN:
                    outbox.retain(self._still_due)  # closing: the outbox takes nothing new
                    if not queued:
                        continue
                message, events = self._next_message()
                await send(message)
                self.writes += 1
                delivered.count += events
            if self.state is StreamState.CLOSING:
                if self._goodbye:
                    await self._say_goodbye(send)
                self._enter(StreamState.CLOSED)
        except self.client_gone_errors:
            self._end(None, "client gone", goodbye=False)
        finally:
            self._writing = False
            if self._cut_off_timer is not None:
                self._cut_off_timer.cancel()
            self._stop_waiting()
            self._interrupt_reading()
