"""Channel and event names, and the glob patterns that grant access to channels."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-:.@]{1,128}")
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# What a client is told when a name breaks those rules.
INVALID_CHANNEL = "invalid channel name: use 1-128 characters of A-Z a-z 0-9 _ - : . @"
INVALID_EVENT_NAME = "invalid event name: use 1-64 characters of A-Z a-z 0-9 _ . : -"


def is_valid_channel(name: str) -> bool:
    """Whether `name` is 1-128 characters of `A-Z a-z 0-9 _ - : . @`."""
    return CHANNEL_RE.fullmatch(name) is not None


def is_valid_event_name(name: str) -> bool:
    """Whether `name` is 1-64 characters of `A-Z a-z 0-9 _ . : -`."""
    return EVENT_NAME_RE.fullmatch(name) is not None


@lru_cache(maxsize=4096)
def _parts(pattern: str) -> tuple[str, ...]:
    # Only `*` is special; every other character matches itself.
    return tuple(pattern.split("*"))


def glob_match(pattern: str, name: str) -> bool:
    """Whether `pattern` (`*` = any run of characters) matches all of `name`.

    Not a regex: `a*a*a*a*b` against a long run of `a` backtracks exponentially
    in one, freezing the event loop. Here the literal pieces between stars are
    found left to right, each at its first place after the previous one (for
    `*`-only globs the leftmost choice never loses a match), so the work is
    bounded by the lengths of the pattern and the name.
    """
    parts = _parts(pattern)
    if len(parts) == 1:
        return pattern == name
    first, *middle, last = parts
    if len(first) + len(last) > len(name):
        return False
    if not name.startswith(first) or not name.endswith(last):
        return False
    position, end = len(first), len(name) - len(last)
    for piece in middle:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def matches_any(patterns: Iterable[str], channel: str) -> bool:
    """Whether any glob pattern (`*` = any run of characters) matches `channel`."""
    return any(glob_match(p, channel) for p in patterns)
