"""The connection registry: admission limits, release, shutdown and the shared ticker."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import pytest

from {{ cookiecutter.project_slug }}.auth import Principal
from {{ cookiecutter.project_slug }}.connections import (
    CloseReason,
    Connection,
    ConnectionRegistry,
    ExpiryTimers,
    Refusal,
)
from {{ cookiecutter.project_slug }}.metrics import Metrics

TRANSPORT = "test"


class Recorded(Connection):
    """A connection that records what the registry asks of it."""

    transport = TRANSPORT

    def __init__(self, sub: str = "alice", *, exp: float | None = None) -> None:
        expires = time.time() + 3600 if exp is None else exp
        super().__init__(Principal(sub=sub, exp=expires, subscribe=("*",), publish=("*",)))
        self.ticks = 0
        self.closed: list[CloseReason] = []

    def tick(self, now: float) -> None:
        self.ticks += 1

    def close(self, reason: CloseReason) -> None:
        self.closed.append(reason)


class FailsToClose(Recorded):
    """A connection whose close fails."""

    def close(self, reason: CloseReason) -> None:
        raise ValueError("a bug in one connection")


class Broken(Recorded):
    """A connection whose tick fails."""

    def tick(self, now: float) -> None:
        raise ValueError("a bug in one connection")


def _registry(
    max_connections: int = 10, *, per_subject: int = 0, metrics: Metrics | None = None
) -> ConnectionRegistry:
    metrics = metrics or Metrics([TRANSPORT])
    return ConnectionRegistry(max_connections, 30.0, metrics, per_subject)


def _sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"transport": TRANSPORT})


async def _wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_admits_up_to_max_connections_then_refuses_and_counts() -> None:
    """At MAX_CONNECTIONS a newcomer is refused FULL and counted as rejected."""
    metrics = Metrics([TRANSPORT])
    registry = _registry(2, metrics=metrics)
    assert registry.admit(Recorded()) is None
    assert registry.admit(Recorded("bob")) is None
    assert registry.admit(Recorded("carol")) is Refusal.FULL
    assert len(registry) == 2
    assert _sample(metrics, "realtime_rejected_connections_total") == 1
    assert _sample(metrics, "realtime_connections") == 2


async def test_one_subject_holds_at_most_its_share() -> None:
    """With a per-subject limit, one `sub` is refused while others still get in."""
    registry = _registry(10, per_subject=1)
    assert registry.admit(Recorded("alice")) is None
    assert registry.admit(Recorded("alice")) is Refusal.SUBJECT_FULL
    assert registry.admit(Recorded("bob")) is None


async def test_release_frees_the_slot_at_once_and_only_once() -> None:
    """A released connection's slot (and its subject's) is reusable; a second release is a no-op."""
    metrics = Metrics([TRANSPORT])
    registry = _registry(1, per_subject=1, metrics=metrics)
    first = Recorded()
    registry.admit(first)
    registry.release(first)
    registry.release(first)
    assert _sample(metrics, "realtime_connections") == 0
    assert registry.admit(Recorded()) is None


async def test_close_all_closes_every_connection_and_refuses_newcomers() -> None:
    """Shutdown asks each open connection to close, then refuses SHUTTING_DOWN."""
    registry = _registry()
    connections = [Recorded(), Recorded("bob")]
    for connection in connections:
        registry.admit(connection)
    registry.close_all()
    assert [c.closed for c in connections] == [[CloseReason.SHUTDOWN]] * 2
    assert registry.admit(Recorded("carol")) is Refusal.SHUTTING_DOWN


async def test_wait_closed_returns_once_the_last_connection_is_released() -> None:
    """`wait_closed` waits for every connection to go, and no longer."""
    registry = _registry()
    connection = Recorded()
    registry.admit(connection)
    waiter = asyncio.create_task(registry.wait_closed())
    await asyncio.sleep(0)
    assert not waiter.done()
    registry.release(connection)
    await asyncio.wait_for(waiter, 5)


async def test_an_expired_token_closes_its_connection() -> None:
    """The expiry timer armed on admission closes the connection TOKEN_EXPIRED."""
    registry = _registry()
    connection = Recorded(exp=time.time() - 1)
    registry.admit(connection)
    await _wait_until(lambda: connection.closed == [CloseReason.TOKEN_EXPIRED])


async def test_connections_expiring_in_the_same_second_share_one_timer() -> None:
    """One timer per second tokens expire in; the last connection to go cancels it."""
    timers = ExpiryTimers()
    soon = float(int(time.time()) + 3600)
    same = [Recorded(exp=soon), Recorded(exp=soon - 0.5)]  # both close at `soon`
    later = Recorded(exp=soon + 1)
    for connection in (*same, later):
        timers.add(connection)
    assert len(timers) == 2
    assert [c.expires_at for c in (*same, later)] == [soon, soon, soon + 1]
    timers.discard(same[0])
    assert len(timers) == 2
    timers.discard(same[1])
    timers.discard(later)
    assert len(timers) == 0
    assert not any(c.closed for c in (*same, later))


async def test_a_token_expiring_within_a_second_closes_at_that_second_not_before() -> None:
    """An `exp` with a fraction is rounded up to its whole second: never early."""
    timers = ExpiryTimers()
    exp = time.time() + 0.2
    connection = Recorded(exp=exp)
    timers.add(connection)
    await _wait_until(lambda: connection.closed == [CloseReason.TOKEN_EXPIRED])
    assert time.time() >= exp
    assert connection.expires_at is None
    assert len(timers) == 0


async def test_one_failing_close_does_not_keep_the_others_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A connection whose close raises is logged; the others sharing its timer still close."""
    timers = ExpiryTimers()
    exp = time.time() - 1
    broken, healthy = FailsToClose("bob", exp=exp), Recorded(exp=exp)
    timers.add(broken)
    timers.add(healthy)
    await _wait_until(lambda: healthy.closed == [CloseReason.TOKEN_EXPIRED])
    assert "closing a test connection failed" in caplog.text


def _refresh(connection: Connection, ttl: float) -> None:
    """Give `connection` a new token, good for `ttl` seconds (as a WebSocket `refresh` does)."""
    connection.principal = Principal(
        sub="alice", exp=time.time() + ttl, subscribe=("*",), publish=("*",)
    )


async def test_adding_again_moves_a_connection_to_its_new_second() -> None:
    """A refreshed token rearms the expiry: the old second's timer goes with it."""
    timers = ExpiryTimers()
    connection = Recorded(exp=time.time() + 60)
    timers.add(connection)
    _refresh(connection, ttl=3600)
    timers.add(connection)
    assert len(timers) == 1
    assert connection.expires_at == math.ceil(connection.principal.exp)


async def test_the_registry_renews_the_expiry_of_its_own_connections_only() -> None:
    """`renew_expiry` rearms an admitted connection; a released one stays unarmed."""
    registry = _registry()
    connection = Recorded(exp=time.time() + 60)
    registry.admit(connection)
    _refresh(connection, ttl=3600)
    registry.renew_expiry(connection)
    assert connection.expires_at == math.ceil(connection.principal.exp)
    registry.release(connection)
    assert connection.expires_at is None
    registry.renew_expiry(connection)
    assert connection.expires_at is None


async def test_the_ticker_ticks_every_connection_despite_a_broken_one() -> None:
    """One connection's failing tick is logged; the others keep their heartbeats."""
    registry = ConnectionRegistry(10, 0.04, Metrics([TRANSPORT]))
    healthy = Recorded()
    registry.admit(Broken("bob"))
    registry.admit(healthy)
    registry.start()
    try:
        await _wait_until(lambda: healthy.ticks >= 2)
    finally:
        await registry.stop()
