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
from {{ cookiecutter.project_slug }}.settings import SettingsError, load_settings

from .clients import SUBSCRIBERS
from .http import LoadTestError, Target
from .report import Progress, format_table
from .runner import Plan, run

T = TypeVar("T")
# Exit statuses: 0 all delivered, 1 the run failed or lost events, 2 bad usage/settings.
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `loadtest` command's options."""
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service's base URL")
    parser.add_argument("--transport", choices=tuple(SUBSCRIBERS), default=next(iter(SUBSCRIBERS)))
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
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run the load test the parsed `args` describe; returns the exit status."""
    try:
        plan = _plan(args)
    except (LoadTestError, SettingsError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _raise_open_files_limit(plan.clients)
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
    target = Target.parse(args.url)
    if args.token:
        subscribe_token = publish_token = args.token
    else:
        settings = load_settings()
        # Long enough to outlast the run: the service ends connections at `exp`.
        ttl = 3600 + (args.events / args.rate if args.rate else 0)
        subscribe_token = mint_token(settings, "loadtest", subscribe=(args.channel,), ttl=ttl)
        publish_token = mint_token(settings, "loadtest", publish=(args.channel,), ttl=ttl)
    return Plan(
        target=target,
        transport=args.transport,
        subscriber=SUBSCRIBERS[args.transport],
        clients=args.clients,
        events=args.events,
        rate=args.rate,
        channel=args.channel,
        subscribe_token=subscribe_token,
        publish_token=publish_token,
        drain_timeout=args.drain_timeout,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _raise_open_files_limit(clients: int) -> None:
    # Each subscriber is a socket; the default soft limit (often 1024) is too low.
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = clients + 64
        if soft != resource.RLIM_INFINITY and soft < wanted:
            limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _run_on_fast_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    # uvloop (installed with uvicorn[standard]) lowers the client's cost per event.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
