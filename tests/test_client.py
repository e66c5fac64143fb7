"""The generated TypeScript client's own scripts pass in every combination."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser.harness import install_node_modules
from rendering import COMBINATIONS, TEMPLATE, combo_id, require_tool, run

NODE_CACHE = TEMPLATE / ".cache" / "client-node-modules"
ENTRY_POINTS = {"sse": "sse.js", "websocket": "websocket.js"}


@pytest.mark.parametrize(
    "combo",
    [
        pytest.param(c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
        for c in COMBINATIONS
    ],
)
def test_client_typechecks_passes_its_tests_and_builds(
    combo: tuple[str, str], rendered: Callable[[str, str], Path]
) -> None:
    """`npm run typecheck`, `npm test` and `npm run build` pass; dist/ has the chosen clients only."""
    npm = require_tool("npm")
    require_tool("node")
    client = rendered(*combo) / "client"
    install_node_modules(client, NODE_CACHE, npm)
    for script in (["run", "typecheck"], ["test"], ["run", "build"]):
        result = run([npm, *script], client, timeout=300)
        assert result.returncode == 0, f"npm {' '.join(script)}:\n{result.stdout}"
    chosen = {"sse", "websocket"} if combo[0] == "both" else {combo[0]}
    built = {name for name, entry in ENTRY_POINTS.items() if (client / "dist" / entry).exists()}
    assert built == chosen
