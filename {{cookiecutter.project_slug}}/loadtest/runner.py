"""One load-test run: connect the subscribers, publish, wait for the deliveries, report."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .http import LoadTestError, Target
from .memory import resident_bytes
from .publisher import Publisher
from .report import Progress, Report
from .subscriber import SubscribeError, Subscriber
from .tally import Tally, new_run_id, payload, summarize

EVENT_NAME = "loadtest"
# Connections opened at once: enough to be quick, few enough not to overflow
# the service's listen backlog.
CONNECT_CONCURRENCY = 100
HOLD_PROGRESS_PERIOD = 0.5  # seconds


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run."""

    target: Target
    transport: str
    subscribers: tuple[type[Subscriber], ...]  # client i is of type i % len(subscribers)
    clients: int
    events: int
    rate: float  # events/s; 0 = each publish as soon as the previous one is accepted
    channel: str
    subscribe_token: str
    publish_token: str
    drain_timeout: float  # give up waiting after this long without a delivery
    hold: float = 0.0  # seconds every connection stays open and idle before the first publish
    heartbeat_interval: float = 0.0  # the service's `HEARTBEAT_INTERVAL`, to tell lag
    server_pid: int | None = None  # whose resident memory to read before and after connecting


async def run(plan: Plan, progress: Progress) -> Report:
    """Run `plan`; `LoadTestError` if it can't be run at all."""
    tally = Tally(plan.clients, new_run_id())
    memory_before = _server_memory(plan)
    subscribers = await _connect(plan, tally, progress)
    publisher = Publisher(plan.target, plan.publish_token, plan.channel, EVENT_NAME)
    try:
        tally.time_heartbeats(since=time.monotonic())
        await _hold(plan, progress)
        tally.time_heartbeats(since=None)
        memory_after = _server_memory(plan)
        started = time.monotonic()
        await _publish(plan, publisher, tally, progress)
        published = time.monotonic() - started
        await _drain(plan, tally, progress)
    finally:
        publisher.close()
        for subscriber in subscribers:
            subscriber.close()
    end = tally.last_receive or time.monotonic()
    return Report(
        transport=plan.transport,
        url=plan.target.url,
        channel=plan.channel,
        clients=plan.clients,
        events=plan.events,
        delivered=tally.delivered,
        seconds=max(end - started, 1e-9),
        publish_rate=plan.events / published if published > 0 else 0.0,
        latency=summarize(tally.latencies),
        losses=plan.clients * plan.events - tally.delivered,
        duplicates=tally.duplicates,
        reorders=tally.reorders,
        disconnected=sum(1 for s in subscribers if s.lost_reason is not None),
        heartbeats=len(tally.heartbeat_gaps),
        heartbeat_interval=plan.heartbeat_interval,
        heartbeat_lag=summarize(tally.heartbeat_gaps, minus=plan.heartbeat_interval),
        server_memory=(memory_before, memory_after)
        if memory_before is not None and memory_after is not None
        else None,
    )


def _server_memory(plan: Plan) -> int | None:
    return None if plan.server_pid is None else resident_bytes(plan.server_pid)


async def _hold(plan: Plan, progress: Progress) -> None:
    """Keep every connection open and idle for `plan.hold` seconds: heartbeats only."""
    started = time.monotonic()
    total = round(plan.hold)
    while (elapsed := time.monotonic() - started) < plan.hold:
        progress.update("holding", min(int(elapsed), total), total)
        await asyncio.sleep(min(HOLD_PROGRESS_PERIOD, plan.hold - elapsed))
    if plan.hold:
        progress.update("holding", total, total, final=True)


async def _connect(plan: Plan, tally: Tally, progress: Progress) -> list[Subscriber]:
    """Open every subscriber; all of them, or `LoadTestError` naming the first failure."""
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    opened: list[Subscriber] = []
    failures: list[str] = []

    async def one(index: int) -> None:
        async with slots:
            if failures:
                return  # one failure fails the run: don't keep hammering
            kind = plan.subscribers[index % len(plan.subscribers)]
            try:
                subscriber = await kind.open(
                    index, tally, plan.target, plan.subscribe_token, plan.channel
                )
            except SubscribeError as exc:
                failures.append(f"a {kind.name} subscriber could not subscribe: {exc}")
                return
            except OSError as exc:
                failures.append(
                    f"a {kind.name} subscriber could not subscribe: "
                    f"can't connect to {plan.target.url}: {exc.strerror or exc}"
                )
                return
            opened.append(subscriber)
            progress.update("connecting", len(opened), plan.clients)

    progress.update("connecting", 0, plan.clients)
    await asyncio.gather(*(one(i) for i in range(plan.clients)))
    if failures:
        for subscriber in opened:
            subscriber.close()
        more = f" ({len(failures)} failed)" if len(failures) > 1 else ""
        raise LoadTestError(failures[0] + more)
    return opened


async def _publish(plan: Plan, publisher: Publisher, tally: Tally, progress: Progress) -> None:
    start = time.monotonic()
    for seq in range(plan.events):
        if plan.rate > 0:
            # An open-loop schedule: a late publish doesn't push back the next ones.
            delay = start + seq / plan.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await publisher.publish(payload(tally.run_id, seq, time.monotonic()))
        progress.update("publishing", seq + 1, plan.events)


async def _drain(plan: Plan, tally: Tally, progress: Progress) -> None:
    """Wait until every delivery arrived, or none arrived for `drain_timeout`."""
    expected = plan.clients * plan.events
    seen, last_change = tally.delivered, time.monotonic()
    while tally.delivered < expected:
        progress.update("delivering", tally.delivered, expected)
        await asyncio.sleep(0.01)
        now = time.monotonic()
        if tally.delivered != seen:
            seen, last_change = tally.delivered, now
        elif now - last_change > plan.drain_timeout:
            break
    progress.update("delivering", tally.delivered, expected, final=True)
