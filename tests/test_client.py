"""The generated TypeScript client's own scripts pass in every combination."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize(
    "combo",
    [
        pytest.param(c, id=combo_id(c), marks=pytest.mark.xdist_group(combo_id(c)))
        for c in COMBINATIONS
    ],
)
def test_packed_client_imports_by_name_with_types_and_source_maps(
    combo: tuple[str, str], rendered: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """`npm pack`'s tarball installs into a scratch ESM project and imports by package name."""
    npm = require_tool("npm")
    node = require_tool("node")
    client = rendered(*combo) / "client"
    install_node_modules(client, NODE_CACHE, npm)
    manifest = json.loads((client / "package.json").read_text())
    assert manifest["engines"]["node"] == ">=22"
    name = manifest["name"]
    chosen = {"sse", "websocket"} if combo[0] == "both" else {combo[0]}
    assert set(manifest["exports"]) == {".", "./package.json", *(f"./{t}" for t in chosen)}
    assert all("types" in manifest["exports"][f"./{t}"] for t in chosen)

    packed = run([npm, "pack", "--pack-destination", str(tmp_path)], client, timeout=300)
    assert packed.returncode == 0, packed.stdout
    (tarball,) = tmp_path.glob("*.tgz")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "package.json").write_text(json.dumps({"name": "scratch", "type": "module"}))
    installed = run([npm, "install", "--no-audit", "--no-fund", str(tarball)], scratch)
    assert installed.returncode == 0, installed.stdout

    classes = {"sse": "RealtimeSSEClient", "websocket": "RealtimeWebSocketClient"}
    lines = [f'import * as all from "{name}";']
    for transport in ("sse", "websocket"):
        if transport in chosen:
            lines += [
                f'const {transport} = await import("{name}/{transport}");',
                f'if (typeof {transport}.{classes[transport]} !== "function") throw new Error("{transport}");',
                f'if (all.{classes[transport]} !== {transport}.{classes[transport]}) throw new Error(".");',
            ]
        else:
            lines.append(
                f'await import("{name}/{transport}").then(() => {{ throw new Error("exported"); }},'
                ' (e) => { if (e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e; });'
            )
    lines.append('console.log("imported");')
    (scratch / "main.mjs").write_text("\n".join(lines) + "\n")
    result = run([node, "main.mjs"], scratch)
    assert result.returncode == 0 and "imported" in result.stdout, result.stdout

    # The types resolve through the exports map too, for a strict TypeScript consumer.
    uses = [f'import {{ {classes[t]} }} from "{name}/{t}";' for t in sorted(chosen)]
    uses += [f'import {{ {classes[t]} as Again{t} }} from "{name}";' for t in sorted(chosen)]
    uses += [f"export const same{t} = {classes[t]} === Again{t};" for t in sorted(chosen)]
    (scratch / "check.ts").write_text("\n".join(uses) + "\n")
    tsconfig = {
        "compilerOptions": {
            "module": "NodeNext",
            "moduleResolution": "NodeNext",
            "target": "ES2022",
            "lib": ["ES2022", "DOM"],
            "types": [],
            "strict": True,
            "noEmit": True,
        },
        "files": ["check.ts"],
    }
    (scratch / "tsconfig.json").write_text(json.dumps(tsconfig))
    tsc = client / "node_modules" / ".bin" / "tsc"
    typed = run([str(tsc), "-p", "tsconfig.json"], scratch, timeout=300)
    assert typed.returncode == 0, typed.stdout

    # Every source map points at files the package ships.
    package = scratch / "node_modules" / name
    maps = sorted(package.glob("dist/*.map"))
    assert {m.name for m in maps} >= {f"{t}.js.map" for t in chosen} | {"index.d.ts.map"}
    for source_map in maps:
        for source in json.loads(source_map.read_text())["sources"]:
            assert (source_map.parent / source).resolve().is_file(), f"{source_map.name}: {source}"
