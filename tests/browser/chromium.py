"""Chromium and the built TypeScript clients, shared by every browser test of a worker."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from rendering import IN_CI, TEMPLATE

NODE_CACHE = TEMPLATE / ".cache" / "client-node-modules"
# Chromium as Debian ships it; Playwright gives it a fresh profile (--user-data-dir) itself.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def playwright_api() -> ModuleType:
    """`playwright.sync_api`; skips without it locally, fails under CI=true."""
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        if IN_CI:
            pytest.fail("the playwright package is not installed (required under CI=true)")
        pytest.skip("the playwright package is not installed")
