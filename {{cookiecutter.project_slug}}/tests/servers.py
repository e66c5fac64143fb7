"""Real `uvicorn` processes for tests: a free port each, output captured, killed by pid."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import httpx2

PACKAGE = "{{ cookiecutter.project_slug }}"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


POLL_INTERVAL = 0.02


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float, message: str
) -> None:
    """Poll `condition` (plain or async) until it holds; `TimeoutError(message)` after `timeout` s.

    The tests' one way to wait for a state that announces itself nowhere: the
    event loop keeps running between polls, and a condition that hangs (an HTTP
    request) counts against the same deadline.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if await result if inspect.isawaitable(result) else result:
                    return
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        raise TimeoutError(message) from None


def wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """`wait_until` for code outside an event loop (fixtures, threads, plain tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(POLL_INTERVAL)


def worker_pids(supervisor_pid: int) -> set[int]:
    """The worker processes of a `uvicorn --workers N` supervisor (Linux `/proc`)."""
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text()
    workers = set()
    for pid in children.split():
        with contextlib.suppress(OSError):
            # multiprocessing's resource tracker is a child too; workers are spawned.
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(int(pid))
    return workers


class ServerProcess:
    """One `uvicorn {{ cookiecutter.project_slug }}.main:app` subprocess (or a test's own app)."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        app: str = f"{PACKAGE}.main:app",
        extra_args: Sequence[str] = (),
        health_path: str = "/healthz",
    ) -> None:
        self.port = port or free_port()
        self.health_path = health_path
        self.log_path = log_path
        self._log = log_path.open("ab")
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *(["--workers", str(workers)] if workers > 1 else []),
            *extra_args,
        ]
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        # `tests/` too, for app factories defined there.
        paths = (str(PROJECT_ROOT / "src"), str(PROJECT_ROOT / "tests"))
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (*paths, os.environ.get("PYTHONPATH", "")) if p
        )
        self.process = subprocess.Popen(
            args,
            cwd=log_path.parent,  # not the project: its .env must not leak into tests
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:<port>`."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process id of uvicorn (the supervisor, with several workers)."""
        return self.process.pid

    def wait_ready(self, timeout: float = 20) -> ServerProcess:
        """Wait until `health_path` answers; fail early if the process died."""

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                return httpx2.get(f"{self.url}{self.health_path}", timeout=1).status_code == 200
            except httpx2.HTTPError:
                return False

        wait_for(up, timeout, f"server on port {self.port} not ready:\n{self.output()}")
        return self

    def output(self) -> str:
        """Everything the server printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        """Send `sig` to uvicorn."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; its return code."""
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Kill the process group (workers included) and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(10)
        finally:
            self._log.close()
            # Where the workers of a `--workers` server shared their metrics.
            shutil.rmtree(
                Path(tempfile.gettempdir()) / f"{PACKAGE}-metrics-{self.process.pid}",
                ignore_errors=True,
            )


def channel_name() -> str:
    """A channel no other test uses (servers and Redis may be shared between tests)."""
    return f"room:{uuid.uuid4().hex[:12]}"
