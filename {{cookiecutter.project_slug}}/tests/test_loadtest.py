"""`python -m loadtest`: runs against a real server, counts right, fails loudly."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from loadtest.clients import SUBSCRIBERS
from loadtest.http import ChunkedDecoder, LoadTestError, Target
from loadtest.report import Progress, Report, format_table
from loadtest.tally import Latency, Tally, payload, percentile

from conftest import TEST_SECRET, ServerFactory
from servers import PROJECT_ROOT, free_port

TRANSPORTS = tuple(SUBSCRIBERS)
# `--transport both` where the service has two: the clients take turns.
WIDEST = "both" if len(TRANSPORTS) > 1 else TRANSPORTS[0]


def loadtest(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command in a clean environment (no `.env` in `cwd`)."""
    return subprocess.run(
        [sys.executable, "-m", "loadtest", *args],
        cwd=cwd,
        env={"PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(PROJECT_ROOT / "src")]), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def table_row(stdout: str) -> dict[str, str]:
    """The report table's one row, by column name."""
    header, row = [line for line in stdout.splitlines() if line.strip()][-2:]
    names = re.split(r"\s{2,}", header.strip())
    values = re.split(r"\s{2,}", row.strip())
    return dict(zip(names, values, strict=True))


# -- against a real server ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_event_reaches_every_client_once_in_order(
    start_server: ServerFactory, tmp_path: Path, transport: str
) -> None:
    """A clean run reports clients x events deliveries, nothing lost, doubled or reordered."""
    server = start_server()
    result = loadtest(
        *("--url", server.url, "--transport", transport, "--clients", "20", "--events", "25"),
        env={"JWT_SECRET": TEST_SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    row = table_row(result.stdout)
    assert row["clients"] == "20"
    assert row["events"] == "25"
    assert row["delivered"] == "500"
    assert (row["losses"], row["duplicates"], row["reorders"]) == ("0", "0", "0")
    assert float(row["p50 ms"]) <= float(row["p99 ms"]) <= float(row["max ms"].replace(",", ""))
    assert "connecting" in result.stderr
    assert "publishing" in result.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_json_report_at_a_fixed_rate(
    start_server: ServerFactory, tmp_path: Path, transport: str
) -> None:
    """`--rate` paces the publisher; `--json` gives the same numbers to a program."""
    server = start_server()
    result = loadtest(
        *("--url", server.url, "--transport", transport, "--clients", "5", "--events", "10"),
        *("--rate", "200", "--channel", "bench:json", "--json", "--quiet"),
        env={"JWT_SECRET": TEST_SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["channel"] == "bench:json"
    assert (report["delivered"], report["expected"]) == (50, 50)
    assert report["latency"]["samples"] == 50
    assert result.stderr == ""


def test_holding_times_heartbeats_and_reads_the_services_memory(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """`--hold` keeps every client open and idle first: heartbeat lag and memory are reported."""
    server = start_server()  # heartbeats every 0.2 s
    result = loadtest(
        *("--url", server.url, "--transport", WIDEST, "--clients", "10", "--events", "5"),
        *("--hold", "1", "--heartbeat-interval", "0.2", "--server-pid", str(server.pid)),
        "--json",
        env={"JWT_SECRET": TEST_SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["transport"] == WIDEST
    assert report["delivered"] == 50
    # Every client heard several in the second it was held.
    assert report["heartbeats"] >= 2 * 10
    lag = report["heartbeat_lag"]
    assert lag["samples"] == report["heartbeats"]
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    before, after = report["server_memory"]
    assert before > 0
    assert after > 0
    assert report["server_kib_per_client"] == (after - before) / 1024 / 10
    assert "holding" in result.stderr

    table = loadtest(
        *("--url", server.url, "--transport", WIDEST, "--clients", "2", "--events", "1"),
        *("--hold", "0.5", "--server-pid", str(server.pid)),
        env={"JWT_SECRET": TEST_SECRET, "HEARTBEAT_INTERVAL": "0.2"},
        cwd=tmp_path,
    )
    assert table.returncode == 0, table.stderr
    assert re.search(
        r"^heartbeats: [\d,]+ while holding; lag past the 0.2 s interval: p50 ", table.stdout, re.M
    )
    assert re.search(
        r"^server memory: [\d.,]+ MiB before connecting, [\d.,]+ MiB with 2 clients",
        table.stdout,
        re.M,
    )


def test_more_clients_than_this_process_may_open_files_for_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """The load test raises its own open-files limit; beyond the hard limit it says so first."""
    result = loadtest("--clients", str(2**40), env={"JWT_SECRET": TEST_SECRET}, cwd=tmp_path)
    assert result.returncode == 2
    assert "open files" in result.stderr
    assert "ulimit -Hn" in result.stderr


def test_a_server_pid_that_is_not_running_is_a_usage_error(tmp_path: Path) -> None:
    """`--server-pid` is checked before anything connects."""
    result = loadtest(
        *("--clients", "1", "--server-pid", "999999999"),
        env={"JWT_SECRET": TEST_SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--server-pid 999999999: no such process" in result.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_token_the_service_refuses_fails_the_run(
    start_server: ServerFactory, tmp_path: Path, transport: str
) -> None:
    """A bad `--token` exits non-zero, saying the subscriber could not subscribe and why."""
    server = start_server()
    result = loadtest(
        *("--url", server.url, "--transport", transport, "--clients", "3", "--events", "1"),
        *("--token", "not-a-jwt"),
        env={},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "could not subscribe" in result.stderr
    assert "token" in result.stderr.lower()


def test_nothing_listening_at_the_url_fails_the_run(tmp_path: Path) -> None:
    """A URL nobody answers at exits non-zero, naming it."""
    url = f"http://127.0.0.1:{free_port()}"
    result = loadtest(
        *("--url", url, "--clients", "2", "--events", "1"),
        env={"JWT_SECRET": TEST_SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert f"can't connect to {url}" in result.stderr


def test_without_a_secret_or_token_it_says_what_is_missing(tmp_path: Path) -> None:
    """No `--token` and no `JWT_SECRET` to mint one: a usage error naming the setting."""
    result = loadtest("--clients", "1", env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr


def test_transport_choices_are_the_rendered_ones(tmp_path: Path) -> None:
    """`--transport` offers exactly the transports this service has, and `both` if two."""
    result = loadtest("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0
    choices = (*TRANSPORTS, "both") if len(TRANSPORTS) > 1 else TRANSPORTS
    assert "{" + ",".join(choices) + "}" in result.stdout


# -- the pieces ------------------------------------------------------------------


def test_in_order_deliveries_are_counted_once() -> None:
    """Each event counts once per subscriber, with its latency."""
    tally = Tally(2, "run1")
    for client in (0, 1):
        for seq in range(3):
            tally.record_json(client, payload("run1", seq, 10.0), 10.5)
    assert tally.delivered == 6
    assert (tally.duplicates, tally.reorders) == (0, 0)
    assert list(tally.latencies) == [0.5] * 6
    assert tally.received_by(0) == 3


def test_gaps_late_arrivals_and_repeats_are_told_apart() -> None:
    """A gap filled later is a reorder, a repeat a duplicate, a gap left a loss."""
    tally = Tally(1, "run1")
    for seq in (0, 2, 3, 2, 1, 1, 5):
        tally.record(0, {"r": "run1", "s": seq, "t": 0.0}, 1.0)
    assert tally.reorders == 1  # 1 came after 2 and 3
    assert tally.duplicates == 2  # the second 2 and the second 1
    assert tally.delivered == 5  # 0, 1, 2, 3, 5: 4 is missing
    assert tally.received_by(0) == 5


def test_payloads_count_however_the_service_encodes_them() -> None:
    """Compact JSON takes the fast path; any other valid encoding is decoded the slow way."""
    tally = Tally(1, "run1")
    compact = json.dumps(json.loads(payload("run1", 0, 1.0)), separators=(",", ":"))
    tally.record_json(0, compact.encode(), 1.5)
    tally.record_json(0, b'{ "t": 1.0, "s": 1, "r": "run1" }', 1.5)
    tally.record_json(0, b'{"r":"run1","s":2,"t":"soon"}', 1.5)  # not a number: decoded, rejected
    assert tally.delivered == 2
    assert list(tally.latencies) == [0.5, 0.5]


def test_other_runs_events_are_ignored() -> None:
    """Events of another run on the same channel, or not JSON, change no count."""
    tally = Tally(1, "mine")
    tally.record(0, {"r": "theirs", "s": 0, "t": 0.0}, 1.0)
    tally.record(0, None, 1.0)
    tally.record_json(0, b"not json", 1.0)
    assert (tally.delivered, tally.foreign, tally.malformed) == (0, 2, 1)


def test_percentiles_are_nearest_rank() -> None:
    """p50 of 1..100 is 50, p99 is 99, p100 the largest."""
    values = array("d", range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50,
        99,
        100,
    )
    assert percentile(array("d", [7.0]), 99) == 7.0


def test_chunked_bodies_decode_whatever_the_reads_split() -> None:
    """Chunk sizes, extensions and CRLFs may arrive split at any byte."""
    body = b"5;ext=1\r\nhello\r\n1a\r\n" + b"x" * 26 + b"\r\n3\r\n!!!\r\n0\r\n\r\n"
    for size in (1, 2, 3, 7, len(body)):
        decoder = ChunkedDecoder()
        out = b"".join(decoder.feed(body[i : i + size]) for i in range(0, len(body), size))
        assert out == b"hello" + b"x" * 26 + b"!!!"
        assert decoder.finished


def test_a_malformed_chunk_size_is_an_error() -> None:
    """Garbage where a chunk size belongs ends the stream with a clear error."""
    with pytest.raises(LoadTestError, match="chunk size"):
        ChunkedDecoder().feed(b"zz\r\n")


def test_urls_are_parsed_or_refused() -> None:
    """http(s) URLs with an optional path prefix; anything else is a usage error."""
    target = Target.parse("https://example.test/rt/")
    assert (target.host, target.port, target.secure, target.prefix) == (
        "example.test",
        443,
        True,
        "/rt",
    )
    assert target.events_path("room:1") == "/rt/channels/room%3A1/events"
    assert target.ws_url == "wss://example.test/rt/ws"
    assert Target.parse("http://127.0.0.1:8000").url == "http://127.0.0.1:8000"
    with pytest.raises(LoadTestError):
        Target.parse("ftp://example.test")


def _report(**changes: int) -> Report:
    values: dict[str, int] = {"delivered": 1000, "losses": 0, "duplicates": 0, "reorders": 0}
    values.update(changes)
    return Report(
        transport="sse",
        url="http://127.0.0.1:8000",
        channel="loadtest",
        clients=10,
        events=100,
        seconds=0.5,
        publish_rate=400.0,
        latency=Latency(p50=1.25, p90=2.5, p99=4.0, max=123.4, samples=1000),
        disconnected=changes.get("disconnected", 0),
        **{k: v for k, v in values.items() if k != "disconnected"},
    )


def test_a_complete_run_is_ok_and_any_loss_is_not() -> None:
    """The exit status rests on `ok`: every delivery, no duplicate, no reorder."""
    assert _report().ok
    assert _report().problems() == []
    lossy = _report(delivered=990, losses=10, disconnected=1)
    assert not lossy.ok
    assert lossy.problems() == [
        "10 of 1,000 deliveries lost",
        "1 subscribers disconnected by the service",
    ]
    assert not _report(duplicates=1).ok
    assert not _report(reorders=1).ok


def test_the_table_lines_up_its_columns() -> None:
    """Every value sits right-aligned under its column name."""
    lines = format_table(_report()).splitlines()
    header, row = lines[-2:]
    assert len(header) == len(row)
    assert table_row(format_table(_report())) == {
        "clients": "10",
        "events": "100",
        "delivered": "1,000",
        "events/s": "2,000",
        "p50 ms": "1.2",
        "p90 ms": "2.5",
        "p99 ms": "4.0",
        "max ms": "123",
        "losses": "0",
        "duplicates": "0",
        "reorders": "0",
    }


def test_progress_off_a_terminal_prints_each_phase_once() -> None:
    """In a log, the progress bar is one finished line per phase, not a redraw per step."""
    out = io.StringIO()
    progress = Progress(out)
    for done in range(101):
        progress.update("connecting", done, 100)
    progress.update("delivering", 5, 10, final=True)
    progress.update("delivering", 5, 10, final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("connecting")
    assert "100/100" in lines[0]
    assert "5/10" in lines[1]
