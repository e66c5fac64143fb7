"""Fixtures of the template's own suite: one render per combination per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rendering import render

Renderer = Callable[[str, str], Path]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """`rendered(transport, broadcaster)`: the project for that combination, rendered once."""
    cache: dict[tuple[str, str], Path] = {}

    def get(transport: str, broadcaster: str) -> Path:
        key = (transport, broadcaster)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{transport}-{broadcaster}")
            cache[key] = render(out, transport=transport, broadcaster=broadcaster)
        return cache[key]

    return get
