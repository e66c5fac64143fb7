"""`python -m loadtest` (from the project root): fan-out throughput, latency and correctness.

A development tool beside the service, not part of it: the wheel and the
container image carry only `src/`, and the service never imports this package.

N subscribers and one publisher share one process and one event loop: the
subscribers are `asyncio.Protocol`s (no task or thread per client), so the
command is not what limits a run of a few thousand clients. Each event carries
its sequence number and send time; the report counts every delivery, lost,
duplicated and out-of-order event, and the exit status is non-zero unless every
event reached every subscriber exactly once, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from {{ cookiecutter.project_slug }}.auth import AuthError, mint_token
from {{ cookiecutter.project_slug }}.settings import Settings, SettingsError, load_settings
from {{ cookiecutter.project_slug }}.startup import raise_open_files_limit

from .clients import SUBSCRIBERS
from .http import LoadTestError, Target
from .memory import check_readable
from .report import Progress, format_table
from .runner import Plan, run

T = TypeVar("T")
# `--transport both`: the clients take turns, one of each transport.
BOTH = "both"
TRANSPORTS = (*SUBSCRIBERS, BOTH) if len(SUBSCRIBERS) > 1 else tuple(SUBSCRIBERS)
DEFAULT_HEARTBEAT_INTERVAL: float = Settings.model_fields["heartbeat_interval"].default
# Files the process opens besides its subscribers' sockets.
SPARE_FILES = 32
# Exit statuses: 0 all delivered, 1 the run failed or lost events, 2 bad usage/settings.
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `loadtest` command's options."""
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=TRANSPORTS[0],
        help=f"{BOTH!r}: the clients take turns, one of each transport"
        if BOTH in TRANSPORTS
        else None,
    )
    parser.add_argument("--clients", type=_positive_int, default=100, help="subscribers")
    parser.add_argument("--events", type=_positive_int, default=100, help="events to publish")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="events per second; 0 (default) publishes each as soon as the last is accepted",
    )
    parser.add_argument("--channel", default="loadtest", help="the channel to use")
    parser.add_argument(
        "--token",
        help="a token allowed to subscribe and publish to the channel "
        "(default: one minted with the configured JWT_SECRET)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        help="seconds without a delivery after which missing events count as lost",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="seconds every connection stays open and idle before the first publish, "
        "to measure heartbeats (default 0)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        help="the service's HEARTBEAT_INTERVAL, to tell how late heartbeats are "
        "(default: from the environment or .env)",
    )
    parser.add_argument(
        "--server-pid",
        type=int,
        help="the service's process id (on this machine): report its resident memory "
        "per client, its workers included",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run the load test the parsed `args` describe; returns the exit status."""
    try:
        plan = _plan(args)
    except (LoadTestError, SettingsError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Each subscriber is a socket; the default soft limit (often 1024) is too low.
    opens = raise_open_files_limit(plan.clients + SPARE_FILES)
    if opens is not None and opens < plan.clients + SPARE_FILES:
        print(
            f"error: {plan.clients:,} clients need {plan.clients + SPARE_FILES:,} open files, "
            f"and this process may open {opens:,} (`ulimit -Hn`): raise that limit, or run "
            "fewer clients per process",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        report = _run_on_fast_loop(run(plan, Progress(enabled=not args.quiet)))
    except LoadTestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report.as_dict()) if args.json else format_table(report))
    problems = report.problems()
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
    return 0 if report.ok else EXIT_FAILED


def _plan(args: argparse.Namespace) -> Plan:
    if args.rate < 0:
        raise LoadTestError("--rate must be 0 or more")
    if args.hold < 0:
        raise LoadTestError("--hold must be 0 or more")
    if args.heartbeat_interval is not None and args.heartbeat_interval <= 0:
        raise LoadTestError("--heartbeat-interval must be more than 0")
    target = Target.parse(args.url)
    if args.server_pid is not None:
        check_readable(args.server_pid)
    settings = None
    if args.token:
        subscribe_token = publish_token = args.token
        if args.heartbeat_interval is None:
            with contextlib.suppress(SettingsError):
                settings = load_settings()
    else:
        settings = load_settings()
        # Long enough to outlast the run: the service ends connections at `exp`.
        ttl = 3600 + args.hold + (args.events / args.rate if args.rate else 0)
        subscribe_token = mint_token(settings, "loadtest", subscribe=(args.channel,), ttl=ttl)
        publish_token = mint_token(settings, "loadtest", publish=(args.channel,), ttl=ttl)
    interval = args.heartbeat_interval or (
        settings.heartbeat_interval if settings else DEFAULT_HEARTBEAT_INTERVAL
    )
    return Plan(
        target=target,
        transport=args.transport,
        subscribers=tuple(SUBSCRIBERS.values())
        if args.transport == BOTH
        else (SUBSCRIBERS[args.transport],),
        clients=args.clients,
        events=args.events,
        rate=args.rate,
        channel=args.channel,
        subscribe_token=subscribe_token,
        publish_token=publish_token,
        drain_timeout=args.drain_timeout,
        hold=args.hold,
        heartbeat_interval=interval,
        server_pid=args.server_pid,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _run_on_fast_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    # uvloop (installed with uvicorn[standard]) lowers the client's cost per event.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
