"""`make bench` runs from a clone and writes one complete results table, into the docs too."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter
from rendering import copy_template, require_tool, run

HEADER = [
    "transport",
    "broadcaster",
    "server",
    "A1 events/s",
    "A1 p50 ms",
    "A1 p99 ms",
    "A1 vs ceiling",
    "A3 events/s",
    "A3 p50 ms",
    "A3 p99 ms",
    "A3 vs ceiling",
    "losses A1/A3",
    "B KiB/conn",
    "B vs ceiling",
]
SERVICE = "**this service**"
# (transport, broadcaster) -> the servers measured there: the peers that can serve it.
EXPECTED_ROWS = {
    ("SSE", "memory"): {
        SERVICE,
        "ceiling",
        "FastAPI `fastapi.sse` + queues",
        "sse-starlette + broadcaster",
    },
    ("SSE", "redis"): {SERVICE, "ceiling", "sse-starlette + broadcaster"},
    ("WebSocket", "memory"): {
        SERVICE,
        "ceiling",
        "FastAPI WebSocket route + queues",
        "FastAPI WebSocket + broadcaster",
        "python-socketio",
    },
    ("WebSocket", "redis"): {
        SERVICE,
        "ceiling",
        "FastAPI WebSocket + broadcaster",
        "python-socketio",
    },
}
NUMBER = re.compile(r"^\d{1,3}(,\d{3})*(\.\d+)?$")
RATIO = re.compile(r"^(\d+\.\d\d\N{MULTIPLICATION SIGN}|n/a)$")
LOSSES = re.compile(r"^\d[\d,]*/\d[\d,]*$")


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table line in `text`, header first."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def check_table(rows: list[list[str]]) -> None:
    """Header as documented; one row per measured server; every cell a number or ratio."""
    assert rows[0] == HEADER
    seen: dict[tuple[str, str], set[str]] = {}
    for row in rows[1:]:
        assert len(row) == len(HEADER), row
        transport, broadcaster, server, *cells = row
        seen.setdefault((transport, broadcaster), set()).add(server)
        for name, cell in zip(HEADER[3:], cells, strict=True):
            if "vs ceiling" in name:
                assert RATIO.match(cell), (row, name, cell)
            elif name.startswith("losses"):
                assert LOSSES.match(cell), (row, name, cell)
            else:
                assert NUMBER.match(cell), (row, name, cell)
        if server == "ceiling":
            assert cells[3] == cells[7] == "1.00\N{MULTIPLICATION SIGN}", row
    assert seen == EXPECTED_ROWS


def block(text: str) -> str:
    """What `make bench` wrote between the markers."""
    return text.split("<!-- bench:start -->", 1)[1].split("<!-- bench:end -->", 1)[0]


@pytest.mark.timeout(240)
def test_quick_bench_writes_every_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make bench QUICK=1` in a fresh copy fills RESULTS.md, the README and the rendered doc."""
    # uv may be installed next to this interpreter rather than on PATH
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    for tool in ("make", "uv", "redis-server"):
        require_tool(tool)
    clone = copy_template(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    result = run(
        ["make", "bench", "QUICK=1", f"PYTHON={sys.executable}"], clone, env=env, timeout=220
    )
    assert result.returncode == 0, result.stdout[-3000:]

    results = (clone / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    rows = table_rows(results)
    check_table(rows)
    assert "`make bench QUICK=1`" in results
    assert "Smoke run" in results

    readme = block((clone / "README.md").read_text(encoding="utf-8"))
    assert table_rows(readme) == rows
    assert "`make bench QUICK=1`" in readme

    # The rendered doc keeps the rows of its own options, and the same numbers.
    for transport, broadcaster, label in (
        ("sse", "memory", "SSE"),
        ("websocket", "redis", "WebSocket"),
    ):
        project = Path(
            cookiecutter(
                str(clone),
                no_input=True,
                output_dir=str(tmp_path / f"{transport}-{broadcaster}"),
                extra_context={"transport": transport, "broadcaster": broadcaster},
            )
        )
        doc = block((project / "docs" / "performance.md").read_text(encoding="utf-8"))
        expected = [rows[0]] + [r for r in rows[1:] if (r[0], r[1]) == (label, broadcaster)]
        assert table_rows(doc) == expected
