"""One `/metrics` for the whole `uvicorn --workers N` group, added up at scrape time.

Each worker keeps its own registry, so counting stays a plain in-process
increment on the hot path. A worker that uvicorn's supervisor started also
answers on a Unix socket in a directory of its group; a scrape, whichever
worker gets it, asks every sibling for its samples and adds them up:
counters and gauges are summed, except `realtime_broadcaster_up`, the minimum
(1 only while every worker's broadcaster is up). A worker that stops leaves its
counters behind in a file, so the group's counters never go down when a worker
is replaced (a worker killed outright, say by the OOM killer, takes its counts
with it: Prometheus sees a counter reset). `realtime_metrics_workers` says how
many workers a scrape covered. The directory stays in the temporary directory
after the server exits; it is a few small files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .metrics import Metrics

logger = logging.getLogger(__name__)

# (family, type, help, sample name, labels, value): one sample, as JSON carries it.
Sample = tuple[str, str, str, str, dict[str, str], float]

# Families combined with `min` rather than summed.
MIN_FAMILIES = frozenset({"realtime_broadcaster_up"})
# How long a scrape waits for one sibling.
PEER_TIMEOUT = 2.0


def group_directory() -> Path | None:
    """The directory this worker's group shares, or None for a lone process.

    uvicorn's `--workers` supervisor starts its workers with `multiprocessing`,
    so they know its pid, which names the group.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return None
    package = __name__.partition(".")[0]
    return Path(tempfile.gettempdir()) / f"{package}-metrics-{parent.pid}"


def _private_directory(path: Path) -> bool:
    """Create `path` for this user alone; False if someone else owns it or may write to it."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def samples_of(registry: CollectorRegistry) -> list[Sample]:
    """Every sample of `registry`, with its family's name, type and help."""
    return [
        (family.name, family.type, family.documentation, s.name, dict(s.labels), s.value)
        for family in registry.collect()
        for s in family.samples
    ]


def combine(groups: Iterable[Iterable[Sample]], workers: int) -> list[Metric]:
    """Add up the samples of several workers into one set of metric families."""
    families: dict[str, Metric] = {}
    values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
    for samples in groups:
        for family, kind, doc, name, labels, value in samples:
            families.setdefault(family, Metric(family, doc, kind))
            key = (family, name, tuple(sorted(labels.items())))
            if key not in values:
                values[key] = value
            elif family in MIN_FAMILIES:
                values[key] = min(values[key], value)
            else:
                values[key] += value
    for (family, name, label_pairs), value in values.items():
        families[family].add_sample(name, dict(label_pairs), value)
    covered = Metric(
        "realtime_metrics_workers", "Workers whose metrics this scrape adds up.", "gauge"
    )
    covered.add_sample("realtime_metrics_workers", {}, float(workers))
    return [*families.values(), covered]


class _Fixed(Collector):
    """A collector of families already gathered."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: list[Metric]) -> bytes:
    """The Prometheus text exposition of `families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


class MetricsGroup:
    """This worker's `Metrics`, shared with (and added up across) its sibling workers."""

    def __init__(
        self, metrics: Metrics, directory: Callable[[], Path | None] = group_directory
    ) -> None:
        self.metrics = metrics
        self._directory = directory
        self._dir: Path | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Join the worker group, if this process is one of several workers."""
        path = self._directory()
        if path is None:
            return
        if not _private_directory(path):
            logger.warning("metrics of this worker only: %s is not private to this user", path)
            return
        self._dir = path
        self._server = await asyncio.start_unix_server(self._answer, path=self._socket(os.getpid()))

    async def stop(self) -> None:
        """Leave the group, leaving this worker's counters behind for the others."""
        if self._dir is None or self._server is None:
            return
        self._server.close()
        counters = [s for s in samples_of(self.metrics.registry) if s[1] == "counter"]
        retired = self._dir / f"{os.getpid()}.retired.json"
        partial = retired.with_suffix(".tmp")
        partial.write_text(json.dumps(counters), encoding="utf-8")
        partial.replace(retired)  # whole or not at all, for a scrape reading it now
        with contextlib.suppress(FileNotFoundError):
            self._socket(os.getpid()).unlink()
        self._server = None

    async def render(self) -> bytes:
        """The Prometheus text of the whole group (of this worker alone, if it is alone)."""
        own = samples_of(self.metrics.registry)
        if self._dir is None:
            return render(combine([own], workers=1))
        peers = [p for p in self._dir.glob("*.sock") if p.stem != str(os.getpid())]
        answers = await asyncio.gather(*(self._ask(p) for p in peers))
        live = [own, *(a for a in answers if a is not None)]
        retired = [self._read_retired(p) for p in self._dir.glob("*.retired.json")]
        return render(combine([*live, *retired], workers=len(live)))

    def _socket(self, pid: int) -> Path:
        assert self._dir is not None
        return self._dir / f"{pid}.sock"

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(samples_of(self.metrics.registry)).encode())
            await writer.drain()
        finally:
            writer.close()

    async def _ask(self, path: Path) -> list[Sample] | None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                try:
                    data = await reader.read()
                finally:
                    writer.close()
        except (ConnectionRefusedError, FileNotFoundError):
            _forget(path)
            return None
        except (OSError, TimeoutError) as exc:
            logger.warning("worker metrics at %s not read: %s", path, exc)
            return None
        return _decode(data)

    @staticmethod
    def _read_retired(path: Path) -> list[Sample]:
        try:
            return _decode(path.read_bytes())
        except FileNotFoundError:
            return []


def _forget(path: Path) -> None:
    # A worker that died without cleaning up: nobody listens there any more.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _decode(data: bytes) -> list[Sample]:
    return [
        (str(f), str(k), str(d), str(n), {str(a): str(b) for a, b in labels.items()}, float(v))
        for f, k, d, n, labels, v in json.loads(data)
    ]
