"""The load test's outcome, its table, and the progress line while it runs."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from .tally import Latency


@dataclass(frozen=True, slots=True)
class Report:
    """What one run measured."""

    transport: str
    url: str
    channel: str
    clients: int
    events: int  # published
    delivered: int  # distinct events received, summed over subscribers
    seconds: float  # from the first publish to the last delivery
    publish_rate: float  # events/s the publisher achieved
    latency: Latency | None
    losses: int
    duplicates: int
    reorders: int
    disconnected: int  # subscribers the service dropped during the run
    heartbeats: int = 0  # gaps timed: two heartbeats in a row while holding
    heartbeat_interval: float = 0.0  # seconds; lag is how far a gap went past it
    heartbeat_lag: Latency | None = None
    server_memory: tuple[int, int] | None = None  # bytes before connecting, and once connected

    @property
    def server_kib_per_client(self) -> float | None:
        """The service's resident memory per open subscriber, in KiB."""
        if self.server_memory is None:
            return None
        before, after = self.server_memory
        return (after - before) / 1024 / self.clients

    @property
    def expected(self) -> int:
        """Deliveries that should have happened: every event to every subscriber."""
        return self.clients * self.events

    @property
    def events_per_s(self) -> float:
        """Delivered events per second."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every event reached every subscriber exactly once, in order."""
        return self.delivered == self.expected and not (
            self.losses or self.duplicates or self.reorders
        )

    def problems(self) -> list[str]:
        """Each way in which the run failed, in words."""
        found = []
        if self.losses:
            found.append(f"{self.losses:,} of {self.expected:,} deliveries lost")
        if self.duplicates:
            found.append(f"{self.duplicates:,} duplicate deliveries")
        if self.reorders:
            found.append(f"{self.reorders:,} deliveries out of publish order")
        if self.disconnected:
            found.append(f"{self.disconnected:,} subscribers disconnected by the service")
        return found

    def as_dict(self) -> dict[str, Any]:
        """Everything, for `--json`."""
        return {
            **asdict(self),
            "expected": self.expected,
            "events_per_s": self.events_per_s,
            "server_kib_per_client": self.server_kib_per_client,
        }


COLUMNS = (
    "clients",
    "events",
    "delivered",
    "events/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "losses",
    "duplicates",
    "reorders",
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def format_table(report: Report) -> str:
    """A title line and a two-row table, columns aligned."""
    lat = report.latency
    percentiles = (lat.p50, lat.p90, lat.p99, lat.max) if lat else (None,) * 4
    values = (
        f"{report.clients:,}",
        f"{report.events:,}",
        f"{report.delivered:,}",
        f"{report.events_per_s:,.0f}",
        *(_ms(p) for p in percentiles),
        f"{report.losses:,}",
        f"{report.duplicates:,}",
        f"{report.reorders:,}",
    )
    widths = [max(len(c), len(v)) for c, v in zip(COLUMNS, values, strict=True)]
    title = (
        f"{report.transport} · {report.url} · channel {report.channel} · "
        f"published {report.events:,} events at {report.publish_rate:,.0f}/s"
    )
    header = "  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True))
    row = "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
    notes = "".join(f"\n{line}" for line in _notes(report))
    return f"{title}\n\n{header}\n{row}\n{notes}"


def _notes(report: Report) -> list[str]:
    """Lines under the table: heartbeats and the service's memory, when measured."""
    lines = []
    lag = report.heartbeat_lag
    if lag is not None:
        lines.append(
            f"heartbeats: {report.heartbeats:,} while holding; lag past the "
            f"{report.heartbeat_interval:g} s interval: p50 {_ms(lag.p50)} ms, "
            f"p99 {_ms(lag.p99)} ms, max {_ms(lag.max)} ms"
        )
    per_client = report.server_kib_per_client
    if report.server_memory is not None and per_client is not None:
        before, after = (value / 2**20 for value in report.server_memory)
        lines.append(
            f"server memory: {before:,.1f} MiB before connecting, {after:,.1f} MiB with "
            f"{report.clients:,} clients: {per_client:,.1f} KiB per client"
        )
    return lines


class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal.

    Elsewhere (a log, CI) only each phase's final line is printed, so the output
    stays readable.
    """

    WIDTH = 30
    PERIOD = 0.1  # seconds between redraws

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._live = enabled and self._stream.isatty()
        self._drawn = 0.0
        self._phase = ""
        self._started = 0.0
        self._finished = False

    def update(self, phase: str, done: int, total: int, *, final: bool = False) -> None:
        """`done` of `total` in `phase`; its last line once done reaches total, or `final`."""
        if not self._enabled:
            return
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._started, self._drawn = phase, now, 0.0
            self._finished = False
        finished = final or done >= total
        if self._finished or (not finished and (not self._live or now - self._drawn < self.PERIOD)):
            return
        self._finished = finished
        self._drawn = now
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"{phase:<11} [{bar}] {done:,}/{total:,}  {now - self._started:5.1f} s"
        if self._live:
            self._stream.write("\r" + line + ("\n" if finished else ""))
        elif finished:
            self._stream.write(line + "\n")
        self._stream.flush()

    def note(self, text: str) -> None:
        """A line of its own."""
        if self._enabled:
            self._stream.write(text + "\n")
            self._stream.flush()
