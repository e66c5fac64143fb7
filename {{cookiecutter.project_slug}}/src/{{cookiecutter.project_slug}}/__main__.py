"""Command line: `python -m {{ cookiecutter.project_slug }} token ...` mints development tokens."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .auth import AuthError, mint_token
from .settings import SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m {{ cookiecutter.project_slug }}")
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser(
        "token", help="print a JWT signed with the configured JWT_SECRET (HS* only)"
    )
    token.add_argument("--sub", required=True, help="the subject (user id)")
    token.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="PATTERN",
        help="channel pattern the token may subscribe to (repeatable; * matches any run)",
    )
    token.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="PATTERN",
        help="channel pattern the token may publish to (repeatable)",
    )
    token.add_argument("--ttl", type=float, default=3600, help="seconds until it expires")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "token":
            if args.ttl <= 0:
                raise AuthError("--ttl must be greater than 0")
            print(
                mint_token(
                    settings,
                    args.sub,
                    subscribe=tuple(args.subscribe),
                    publish=tuple(args.publish),
                    ttl=args.ttl,
                )
            )
    except (SettingsError, AuthError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
