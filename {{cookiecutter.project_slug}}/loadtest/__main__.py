"""`python -m loadtest`: run the load test the command line describes."""

from __future__ import annotations

import argparse
import sys

import loadtest


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description=loadtest.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    loadtest.add_arguments(parser)
    return parser


if __name__ == "__main__":
    sys.exit(loadtest.main(build_parser().parse_args()))
