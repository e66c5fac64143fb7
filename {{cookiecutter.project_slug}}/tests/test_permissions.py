"""Channel and event names, and glob patterns over channels."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from {{ cookiecutter.project_slug }}.permissions import (
    is_valid_channel,
    is_valid_event_name,
    matches_any,
)

CHANNEL_CHARS = "ABCxyz019_-:.@"
channels = st.text(alphabet=CHANNEL_CHARS, min_size=1, max_size=20)


@pytest.mark.parametrize("name", ["a", "room:1", "user@example.com", "A-Z_0.9:x", "x" * 128])
def test_valid_channels(name: str) -> None:
    """1-128 characters of A-Z a-z 0-9 _ - : . @ make a channel name."""
    assert is_valid_channel(name)


@pytest.mark.parametrize("name", ["", "x" * 129, "a b", "a/b", "ä", "a*", "a\n", "a?b"])
def test_invalid_channels(name: str) -> None:
    """Anything else is not a channel name."""
    assert not is_valid_channel(name)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("message", True),
        ("a.b:c-d_e", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("a b", False),
        ("a@b", False),
        ("é", False),
    ],
)
def test_event_names(name: str, valid: bool) -> None:
    """Event names are 1-64 characters of A-Z a-z 0-9 _ . : -."""
    assert is_valid_event_name(name) is valid


@pytest.mark.parametrize(
    ("pattern", "channel", "matches"),
    [
        ("*", "anything", True),
        ("room:*", "room:1", True),
        ("room:*", "room:", True),
        ("room:*", "rooms", False),
        ("*:admin", "team:admin", True),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXbYY", False),
        ("room.1", "roomX1", False),
        ("exact", "exact", True),
        ("exact", "exactly", False),
    ],
)
def test_glob_patterns(pattern: str, channel: str, matches: bool) -> None:
    """`*` matches any run of characters; every other character matches only itself."""
    assert matches_any([pattern], channel) is matches


def test_no_patterns_match_nothing() -> None:
    """An empty claim grants nothing."""
    assert not matches_any([], "room:1")


@given(prefix=channels, rest=channels)
def test_prefix_star_matches_every_extension(prefix: str, rest: str) -> None:
    """`p*` matches p followed by anything."""
    assert matches_any([prefix + "*"], prefix + rest)


@given(pattern=st.text(alphabet=CHANNEL_CHARS + "*", max_size=12), channel=channels)
def test_glob_agrees_with_a_reference_regex(pattern: str, channel: str) -> None:
    """Matching equals a straightforward regex translation of the pattern."""
    reference = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    assert matches_any([pattern], channel) == (re.fullmatch(reference, channel) is not None)
