"""What every subscriber received: deliveries, latency, losses, duplicates, reorders.

Each published event carries the run's id, its sequence number and the publisher's
clock reading (`time.monotonic()` of this process) when it was sent, so the
subscribers, in the same process, can tell their latency, and whether they saw
every event exactly once and in publish order.
"""

from __future__ import annotations

import json
import secrets
from array import array
from dataclasses import dataclass
from typing import Any


def new_run_id() -> str:
    """A short random id that tells this run's events from anyone else's."""
    return secrets.token_hex(4)


def payload(run_id: str, seq: int, sent: float) -> bytes:
    """The `data` of event number `seq`, sent at `sent` (monotonic seconds)."""
    return b'{"r":"%s","s":%d,"t":%.9f}' % (run_id.encode(), seq, sent)


@dataclass(frozen=True, slots=True)
class Latency:
    """Delivery latency percentiles, in milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float
    samples: int


def percentile(ordered: array[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of sorted, non-empty values."""
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without float rounding
    return ordered[int(rank) - 1]


def summarize(latencies: array[float], *, minus: float = 0.0) -> Latency | None:
    """Percentiles of `latencies` (seconds) less `minus`, never below 0, in milliseconds.

    None without samples.
    """
    if not latencies:
        return None
    ordered = array("d", sorted(max(0.0, value - minus) for value in latencies))
    return Latency(
        p50=percentile(ordered, 50) * 1000,
        p90=percentile(ordered, 90) * 1000,
        p99=percentile(ordered, 99) * 1000,
        max=ordered[-1] * 1000,
        samples=len(ordered),
    )


class Tally:
    """Per-subscriber bookkeeping, kept cheap: it runs once per delivery.

    A subscriber expects sequence numbers 0, 1, 2, ... A number above the next
    expected one leaves a gap; a number that later fills a gap is a reorder (it
    was delivered, late); any other number seen before is a duplicate. Whatever
    gap is left at the end was lost.
    """

    def __init__(self, clients: int, run_id: str) -> None:
        self.run_id = run_id
        self._prefix = b'{"r":"%s","s":' % run_id.encode()
        self._next = [0] * clients
        self._gaps: list[set[int] | None] = [None] * clients
        self.latencies: array[float] = array("d")
        self.delivered = 0  # distinct events delivered, summed over subscribers
        self.duplicates = 0
        self.reorders = 0
        self.foreign = 0  # events of another run (or not a load-test event)
        self.malformed = 0
        self.first_receive: float | None = None
        self.last_receive: float | None = None
        # Seconds between a subscriber's consecutive heartbeats, both received
        # while every connection is open and no event published yet (the hold).
        self.heartbeat_gaps: array[float] = array("d")
        self._timing_since: float | None = None

    def record_json(self, client: int, data: bytes, now: float) -> None:
        """Record an event whose `data` is still JSON text."""
        # Fast path, a third of the cost of `json.loads`: our own payload as the
        # service re-encodes it (compact, keys in order). Anything else is decoded.
        if data.startswith(self._prefix) and data.endswith(b"}"):
            seq, found, sent = data[len(self._prefix) : -1].partition(b',"t":')
            if found:
                try:
                    self._count(client, int(seq), float(sent), now)
                except ValueError:
                    pass
                else:
                    return
        try:
            decoded = json.loads(data)
        except ValueError:
            self.malformed += 1
            return
        self.record(client, decoded, now)

    def record(self, client: int, data: Any, now: float) -> None:
        """Record that `client` received an event with the decoded `data` at `now`."""
        if type(data) is not dict or data.get("r") != self.run_id:
            self.foreign += 1
            return
        seq, sent = data.get("s"), data.get("t")
        if type(seq) is not int or not isinstance(sent, int | float) or isinstance(sent, bool):
            self.malformed += 1
            return
        self._count(client, seq, sent, now)

    def _count(self, client: int, seq: int, sent: float, now: float) -> None:
        expected = self._next[client]
        if seq == expected:
            self._next[client] = seq + 1
        elif seq > expected:
            gaps = self._gaps[client]
            if gaps is None:
                gaps = self._gaps[client] = set()
            gaps.update(range(expected, seq))
            self._next[client] = seq + 1
        else:
            gaps = self._gaps[client]
            if gaps is None or seq not in gaps:
                self.duplicates += 1
                return
            gaps.discard(seq)
            self.reorders += 1
        self.delivered += 1
        self.latencies.append(now - sent)
        if self.first_receive is None:
            self.first_receive = now
        self.last_receive = now

    def time_heartbeats(self, since: float | None) -> None:
        """Time heartbeats whose gap begins at `since` or later; None: stop timing."""
        self._timing_since = since

    def heartbeat(self, since: float, now: float) -> None:
        """Record a heartbeat at `now`, the previous one (or the subscription) at `since`."""
        # Not from before the hold, which would measure the connection storm,
        # nor once events flow: an SSE heartbeat is only sent after a silence.
        if self._timing_since is not None and since >= self._timing_since:
            self.heartbeat_gaps.append(now - since)

    def received_by(self, client: int) -> int:
        """How many distinct events `client` received."""
        gaps = self._gaps[client]
        return self._next[client] - (len(gaps) if gaps else 0)
