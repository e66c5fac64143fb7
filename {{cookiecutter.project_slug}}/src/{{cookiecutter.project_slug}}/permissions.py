"""Channel and event names, and the glob patterns that grant access to channels."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-:.@]{1,128}")
EVENT_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def is_valid_channel(name: str) -> bool:
    """Whether `name` is 1-128 characters of `A-Z a-z 0-9 _ - : . @`."""
    return CHANNEL_RE.fullmatch(name) is not None


def is_valid_event_name(name: str) -> bool:
    """Whether `name` is 1-64 characters of `A-Z a-z 0-9 _ . : -`."""
    return EVENT_NAME_RE.fullmatch(name) is not None


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    # Only `*` is special; every other character matches itself.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def matches_any(patterns: Iterable[str], channel: str) -> bool:
    """Whether any glob pattern (`*` = any run of characters) matches `channel`."""
    return any(_compile(p).fullmatch(channel) is not None for p in patterns)
