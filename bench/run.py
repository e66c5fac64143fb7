#!/usr/bin/env python3
"""Run the benchmark matrix and write bench/RESULTS.md (and, with --update-docs, the docs' tables).

    python bench/run.py                        # what `make bench` runs: 3 passes, 500 subscribers
    python bench/run.py --quick                # smoke run: 1 pass, few subscribers, a minute or two

Steps: render the service (transport=both, once per broadcaster) into --out and install
it with `uv sync`; start a redis-server of its own on a free loopback port; then, pass
after pass (interleaved, so that a slow minute of the machine hits every server alike),
start each server once per (broadcaster, transport) and let `driver.py` run the plan on
it: B (idle KiB per connection, on the fresh process), A1 and A3 (fan-out). Medians over
the passes go into one Markdown table; ratios to the ceiling are taken within each pass
(same minute, same machine) and then their median.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SLUG = "realtime_service"  # the template's default project_slug
MODES = ("memory", "redis")
TRANSPORTS = ("sse", "ws")
TRANSPORT_NAMES = {"sse": "SSE", "ws": "WebSocket"}
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
TIMES = "\N{MULTIPLICATION SIGN}"
UNDEFINED = float("-inf")  # a ratio whose denominator is not positive: shown as n/a
PERFORMANCE_DOC = ROOT / "{{cookiecutter.project_slug}}" / "docs" / "performance.md"
UVICORN = "-m uvicorn {app} --host {{host}} --port {{port}} --no-access-log --log-level warning"
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "websockets",
    "redis",
    "sse-starlette",
    "broadcaster",
    "python-socketio",
    "python-engineio",
)


@dataclass(frozen=True)
class Server:
    """One row family of the table: a server and what it can be measured on."""

    name: str
    labels: dict[str, str]  # transport -> how the table names it
    modes: tuple[str, ...]
    transports: tuple[str, ...]

    def driver_transport(self, transport: str) -> str:
        return "sio" if self.name == "socketio" else transport


SERVERS = (
    Server("service", {"sse": "**this service**", "ws": "**this service**"}, MODES, TRANSPORTS),
    Server("ceiling", {"sse": "ceiling", "ws": "ceiling"}, MODES, TRANSPORTS),
    Server(
        "fastapi_native",
        {"sse": "FastAPI `fastapi.sse` + queues", "ws": "FastAPI WebSocket route + queues"},
        ("memory",),
        TRANSPORTS,
    ),
    Server(
        "sse_starlette_broadcaster",
        {"sse": "sse-starlette + broadcaster", "ws": "FastAPI WebSocket + broadcaster"},
        MODES,
        TRANSPORTS,
    ),
    Server("socketio", {"ws": "python-socketio"}, MODES, ("ws",)),
)
PEER_MODULES = {
    "ceiling": "peers.ceiling:app",
    "fastapi_native": "peers.fastapi_native:app",
    "sse_starlette_broadcaster": "peers.sse_starlette_broadcaster:app",
    "socketio": "peers.socketio_peer:app",
}


def log(*a: Any) -> None:
    print("[bench]", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ setup
def render_service(out: Path, broadcaster: str) -> Path:
    """Render transport=both with `broadcaster` into `out` and install it; the project path."""
    uv = shutil.which("uv")
    if uv is None:
        sys.exit(
            "bench: uv is not on PATH (https://docs.astral.sh/uv/): it installs the rendered service"
        )
    dest = out / f"render-{broadcaster}"
    rendered = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "-f",
            "-o",
            str(dest),
            str(ROOT),
            "transport=both",
            f"broadcaster={broadcaster}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if rendered.returncode:
        sys.exit(f"bench: rendering failed:\n{rendered.stdout}{rendered.stderr}")
    project = dest / SLUG
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(project / ".venv")}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [uv, "sync", "--locked", "--no-dev", "--quiet", "--python", sys.executable],
        cwd=project,
        env=env,
        check=True,
    )
    return project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if not exe:
        sys.exit(
            "bench: redis-server is not on PATH (apt-get install redis-server, brew install redis)"
        )
    port = free_port()
    p = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "20000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return p, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    p.kill()
    sys.exit("bench: redis-server did not answer PING within 10 s")


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


# ------------------------------------------------------------------------------------------ running
def server_cmd(server: Server, mode: str, projects: dict[str, Path]) -> tuple[str, Path]:
    if server.name == "service":
        project = projects[mode]
        return (
            f"{project / '.venv' / 'bin' / 'python'} {UVICORN.format(app=SLUG + '.main:app')}",
            project,
        )
    return f"{sys.executable} {UVICORN.format(app=PEER_MODULES[server.name])}", BENCH


def run_server(
    server: Server,
    mode: str,
    transport: str,
    plan: list[dict[str, Any]],
    projects: dict[str, Path],
    redis_url: str,
    logdir: Path,
    pas: int,
    settle: float,
) -> dict[str, Any]:
    cmd, cwd = server_cmd(server, mode, projects)
    name = f"{server.name}-{mode}-{transport}-p{pas}"
    argv = [
        sys.executable,
        str(BENCH / "driver.py"),
        "--cmd",
        cmd,
        "--cwd",
        str(cwd),
        "--transport",
        server.driver_transport(transport),
        "--plan",
        json.dumps(plan),
        "--env",
        f"BROADCAST={mode}",
        "--env",
        f"REDIS_URL={redis_url}",
        "--settle",
        str(settle),
        "--server-log",
        str(logdir / f"{name}.log"),
    ]
    t0 = time.monotonic()
    with open(logdir / f"{name}.driver.log", "w") as err:
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True, timeout=900)
            lines = done.stdout.strip().splitlines()
            res = (
                json.loads(lines[-1])
                if lines
                else {"ok": False, "error": "no output from the driver"}
            )
        except subprocess.TimeoutExpired:
            res = {"ok": False, "error": "driver timed out after 900 s"}
    res.update(
        server=server.name,
        mode=mode,
        transport=transport,
        pass_=pas,
        wall_s=round(time.monotonic() - t0, 1),
    )
    return res


# ------------------------------------------------------------------------------------------ report
def get(d: dict[str, Any] | None, path: str) -> Any:
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def median(vals: list[Any]) -> float | None:
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.median(nums) if nums else None


def step(res: dict[str, Any], sid: str) -> dict[str, Any] | None:
    r = get(res, f"results.{sid}")
    return r if isinstance(r, dict) and r.get("ok") else None


def ratio(
    results: list[dict[str, Any]], row: tuple[str, str, str], sid: str, metric: str
) -> float | None:
    """Median over passes of row's metric / the ceiling's metric in the same pass."""
    _server, mode, transport = row
    out = []
    for r in results:
        if (r["server"], r["mode"], r["transport"]) != row:
            continue
        ceil = next(
            (
                c
                for c in results
                if (c["server"], c["mode"], c["transport"], c["pass_"])
                == ("ceiling", mode, transport, r["pass_"])
            ),
            None,
        )
        a, b = get(step(r, sid), metric), get(step(ceil, sid) if ceil else None, metric)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if (
                b <= 0
            ):  # e.g. the ceiling's RSS didn't grow measurably with a handful of connections
                return UNDEFINED
            out.append(a / b)
    return median(out)


def num(v: float | None, nd: int = 0, unit: str = "") -> str:
    if v is None:
        return "failed"
    if v == UNDEFINED:
        return "n/a"
    return f"{v:,.{nd}f}{unit}"


def rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, list[str]]]:
    """(transport, mode, server name, cells) for every measured row, in table order."""
    out = []
    for transport in TRANSPORTS:
        for mode in MODES:
            for server in SERVERS:
                if mode not in server.modes or transport not in server.transports:
                    continue
                key = (server.name, mode, transport)
                mine = [r for r in results if (r["server"], r["mode"], r["transport"]) == key]

                def med(sid: str, metric: str, rs: list[dict[str, Any]] = mine) -> float | None:
                    return median([get(step(r, sid), metric) for r in rs])

                losses = "/".join(num(med(s, "losses")) for s in ("A1", "A3"))
                cells = [TRANSPORT_NAMES[transport], mode, server.labels[transport]]
                for sid in ("A1", "A3"):
                    cells += [
                        num(med(sid, "events_per_s")),
                        num(med(sid, "latency.p50_ms"), 1),
                        num(med(sid, "latency.p99_ms"), 1),
                        num(ratio(results, key, sid, "events_per_s"), 2, TIMES),
                    ]
                cells += [
                    losses,
                    num(med("B", "kib_per_conn"), 1),
                    num(ratio(results, key, "B", "kib_per_conn"), 2, TIMES),
                ]
                out.append((transport, mode, server.name, cells))
    return out


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


def table_lines(measured: list[tuple[str, str, str, list[str]]], jinja: bool = False) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    group = None
    for transport, mode, _, cells in measured:
        if jinja and group != (transport, mode):
            if group is not None:
                lines.append("{% endif %}")
            choices = '("both", "sse")' if transport == "sse" else '("both", "websocket")'
            lines.append(
                f'{{% if cookiecutter.transport in {choices} and cookiecutter.broadcaster == "{mode}" %}}'
            )
            group = (transport, mode)
        lines.append("| " + " | ".join(cells) + " |")
    if jinja and group is not None:
        lines.append("{% endif %}")
    return lines


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def versions(project: Path) -> str:
    out = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out.append(f"{name} {importlib.metadata.version(name)}")
    svc = subprocess.run(
        [
            str(project / ".venv" / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(*(f'{n} {m.version(n)}' for n in "
            "('fastapi', 'starlette', 'uvicorn', 'redis')), sep=', ')",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return ", ".join(out) + (f"; the service's own venv: {svc}" if svc else "")


def provenance(
    a: argparse.Namespace, smoke: bool, started: datetime.datetime, load: float
) -> list[str]:
    if smoke:
        kind = (
            f"**Smoke run** ({a.passes_done} pass{'es' if a.passes_done != 1 else ''}, "
            f"{a.subscribers} subscribers in A1"
            f"{', servers measured side by side' if a.jobs > 1 else ''}): it shows that the benchmark "
            "runs; its numbers are not for quoting."
        )
    else:
        kind = f"{a.passes_done} interleaved passes, medians."
    if a.passes_done < a.passes:
        kind += (
            f" It stopped after {a.passes_done} of {a.passes} passes: another would have run past "
            f"the {a.budget:g}-minute budget."
        )
    busy = " (busy: above its core count)" if load > (os.cpu_count() or 1) else ""
    return [
        f"Measured {started:%Y-%m-%d %H:%M} UTC with `{a.command}` at the template repository's root. {kind}",
        f"Machine: {machine()}; load average {load:.1f} when it started{busy}. "
        "The servers and the driver share it.",
    ]


def write_results(
    a: argparse.Namespace,
    results: list[dict[str, Any]],
    smoke: bool,
    started: datetime.datetime,
    load: float,
    projects: dict[str, Path],
    plan: list[dict[str, Any]],
) -> list[tuple[str, str, str, list[str]]]:
    measured = rows(results)
    n = {s["id"]: s for s in plan}
    scen = (
        f"A1: {n['A1']['n']} subscribers, {n['A1']['messages']} events published back to back; "
        f"A3: {n['A3']['n']} subscribers, {n['A3']['messages']} events; "
        f"B: {n['B']['n']} idle subscribers, server RSS growth per connection."
    )
    failed = [
        f"- `{r['server']}` {r['mode']} {r['transport']} pass {r['pass_']}: "
        f"{r.get('error') or {k: v.get('error') for k, v in (r.get('results') or {}).items() if not v.get('ok')}}"
        for r in results
        if not r.get("ok")
    ]
    text = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/run.py); [README.md](README.md) says what each server is and how it is measured.",
        "",
        *provenance(a, smoke, started, load),
        "",
        scen,
        "",
        f"Versions: {versions(projects['memory'])}.",
        "",
        *table_lines(measured),
        "",
    ]
    if failed:
        text += ["Failed runs:", "", *failed, ""]
    Path(a.results).write_text("\n".join(text), encoding="utf-8")
    return measured


def replace_block(path: Path, body: list[str]) -> None:
    text = path.read_text(encoding="utf-8")
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        sys.exit(f"bench: {path} has no {START} ... {END} block")
    path.write_text(
        text[: i + len(START)] + "\n" + "\n".join(body) + "\n" + text[j:], encoding="utf-8"
    )


def update_docs(
    a: argparse.Namespace,
    root: Path,
    measured: list[tuple[str, str, str, list[str]]],
    smoke: bool,
    started: datetime.datetime,
    load: float,
) -> None:
    prov = provenance(a, smoke, started, load)
    replace_block(root / "README.md", [*prov, "", *table_lines(measured)])
    replace_block(
        root / PERFORMANCE_DOC.relative_to(ROOT), [*prov, "", *table_lines(measured, jinja=True)]
    )


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument(
        "--subscribers", type=int, default=500, help="A1's subscribers; A3 has 4x, B 2x as many"
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 pass, 25 subscribers, few events, three servers at a time",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="servers measured at the same time (more than 1 only for smoke runs: they share the CPU)",
    )
    ap.add_argument(
        "--settle", type=float, default=0.5, help="seconds to let RSS settle around scenario B"
    )
    ap.add_argument(
        "--out", default=str(ROOT / ".cache" / "bench"), help="renders, raw results and logs"
    )
    ap.add_argument("--results", default=str(BENCH / "RESULTS.md"))
    ap.add_argument(
        "--budget",
        type=float,
        default=14.0,
        help="minutes: no pass starts that would end past this after the start",
    )
    ap.add_argument(
        "--update-docs",
        action="store_true",
        help="also rewrite the marked tables in README.md and the rendered docs/performance.md",
    )
    ap.add_argument(
        "--command", default=None, help="the command to name in the results (default: this one)"
    )
    a = ap.parse_args()
    a.command = a.command or "python " + " ".join(sys.argv)
    if a.quick:
        a.passes, a.subscribers, a.jobs, a.settle = 1, 25, 3, 0.1
    # 100,000 deliveries per cell: bursts of a fifth of a second (40 and 10 events) left
    # the server's CPU idle part of the time and moved a cell's ratio by a fifth.
    a1_msgs, a3_msgs = (20, 5) if a.quick else (200, 50)
    plan = [
        {"id": "B", "scenario": "idle", "n": 2 * a.subscribers},
        {"id": "A1", "scenario": "fanout", "n": a.subscribers, "messages": a1_msgs},
        {"id": "A3", "scenario": "fanout", "n": 4 * a.subscribers, "messages": a3_msgs},
    ]
    started = datetime.datetime.now(datetime.UTC)
    load = os.getloadavg()[0]
    out = Path(a.out).resolve()
    logdir = out / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    projects = {mode: render_service(out, mode) for mode in MODES}
    log(f"rendered and installed the service in {time.monotonic() - t0:.0f} s")
    redis, redis_url = start_redis()
    raw = out / f"run-{started:%Y%m%d-%H%M%S}.jsonl"
    cells = [
        (mode, transport, server)
        for mode in MODES
        for transport in TRANSPORTS
        for server in SERVERS
        if mode in server.modes and transport in server.transports
    ]

    def one(pas: int, cell: tuple[str, str, Server]) -> dict[str, Any]:
        mode, transport, server = cell
        r = run_server(server, mode, transport, plan, projects, redis_url, logdir, pas, a.settle)
        summary = " ".join(
            f"{sid}={get(step(r, sid), 'events_per_s') or get(step(r, sid), 'kib_per_conn')}"
            for sid in ("B", "A1", "A3")
        )
        log(
            f"[{time.monotonic() - t0:4.0f} s] pass {pas} {server.name} {mode} {transport}: "
            f"ok={r.get('ok')} {summary} ({r['wall_s']} s)"
        )
        return r

    results: list[dict[str, Any]] = []
    a.passes_done = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            for pas in range(1, a.passes + 1):
                t_pass = time.monotonic()
                results += pool.map(lambda cell, pas=pas: one(pas, cell), cells)
                a.passes_done = pas
                elapsed, took = time.monotonic() - t0, time.monotonic() - t_pass
                if pas < a.passes and elapsed + took > a.budget * 60:
                    log(f"stopping after pass {pas}: another ({took:.0f} s) would pass the budget")
                    break
        raw.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
    finally:
        stop(redis)
    smoke = a.quick or a.passes_done < 3 or a.subscribers < 500 or a.jobs > 1
    measured = write_results(a, results, smoke, started, load, projects, plan)
    if a.update_docs:
        update_docs(a, ROOT, measured, smoke, started, load)
    log(f"wrote {a.results} in {time.monotonic() - t0:.0f} s; raw results: {raw}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
