"""Fixtures of the template's own suite: one render per combination per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser.chromium import CHROMIUM, CHROMIUM_ARGS, NODE_CACHE, playwright_api
from browser.harness import install_node_modules
from rendering import render, require_tool, run

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


# One Chromium per test worker: Playwright's sync API can't run two at once in one
# process, so every browser test module shares these session fixtures.
@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium per test worker; each test gets its own context."""
    # Debian's path first; otherwise whatever `chromium` is on PATH (none: fail under CI).
    executable = CHROMIUM if os.path.exists(CHROMIUM) else require_tool("chromium")
    api = playwright_api()
    with api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def built_client(
    rendered: Callable[[str, str], Path],
) -> Callable[[tuple[str, str]], Path]:
    """`built_client(combo)`: that render's client/dist, built once per session."""
    built: dict[tuple[str, str], Path] = {}

    def get(combo: tuple[str, str]) -> Path:
        if combo not in built:
            npm = require_tool("npm")
            require_tool("node")
            client = rendered(*combo) / "client"
            install_node_modules(client, NODE_CACHE, npm)
            result = run([npm, "run", "build"], client, timeout=300)
            assert result.returncode == 0, result.stdout
            built[combo] = client / "dist"
        return built[combo]

    return get
