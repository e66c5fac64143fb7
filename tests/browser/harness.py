"""What the browser tests run: the rendered service under real uvicorn, a page server, tokens.

Every process started here runs in its own session and is killed by pid in
cleanup; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import jwt

STATIC = Path(__file__).resolve().parent / "static"
SECRET = "browser-tests-only-secret-0123456789abcdef"
# Small, so that the watchdog (2 x interval) notices a frozen server quickly.
HEARTBEAT_INTERVAL = 0.5
PACKAGE = "realtime_service"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Poll `condition` until it holds; raise `TimeoutError(message)` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.02)


def mint(sub: str = "browser", *, channels: str = "*", ttl: float = 600) -> str:
    """A token for the test secret that may subscribe and publish to `channels`."""
    now = int(time.time())
    claims = {
        "sub": sub,
        "exp": now + int(ttl),
        "subscribe": [channels],
        "publish": [channels],
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Service:
    """The rendered service under `python -m uvicorn`, restartable on the same port."""

    def __init__(self, project: Path, workdir: Path, extra_env: dict[str, str]) -> None:
        self.project = project
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"service-{self.port}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(project / "src"),
            "PYTHONUNBUFFERED": "1",
            "JWT_SECRET": SECRET,
            "HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "SHUTDOWN_GRACE": "3",
            **extra_env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start uvicorn without waiting for it (see `wait_ready`)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    f"{PACKAGE}.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                # Not the project: its .env must not leak into the test's settings.
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until `/healthz` answers; fail at once if uvicorn died."""

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.process.returncode}:\n{self.output()}"
                )
            with contextlib.suppress(httpx2.HTTPError):
                return httpx2.get(f"{self.url}/healthz", timeout=1).status_code == 200
            return False

        wait_for(up, timeout, f"service on port {self.port} not ready:\n{self.output()}")

    def start(self) -> None:
        """Start uvicorn and wait until it serves."""
        self.launch()
        self.wait_ready()

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to uvicorn's process group."""
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def wait_exit(self, timeout: float = 10) -> int:
        """Wait for uvicorn to exit by itself (after SIGTERM); its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL uvicorn (if running) and reap it: the port is free again after this."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def output(self) -> str:
        """Everything uvicorn printed so far (all runs on this port)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def publish(self, channel: str, data: object, token: str) -> str:
        """Publish over HTTP; the event's id."""
        response = httpx2.post(
            f"{self.url}/channels/{channel}/events",
            json={"event": "tick", "data": data},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the harness page, and `/dist/` from the built client."""

    def __init__(self, *args: object, dist: Path, **kwargs: object) -> None:
        self.dist = dist
        super().__init__(*args, directory=str(STATIC), **kwargs)  # type: ignore[arg-type]

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if path.startswith("/dist/"):
            return str(self.dist / path.removeprefix("/dist/"))
        return super().translate_path(path)

    def end_headers(self) -> None:
        # A rebuilt client must never be served from the browser's cache.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output for failures


@contextlib.contextmanager
def page_server(dist: Path) -> Iterator[str]:
    """Serve the harness page on a free port (its own origin, so CORS is exercised too)."""
    handler = functools.partial(_PageHandler, dist=dist)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def install_node_modules(client: Path, cache_root: Path, npm: str) -> None:
    """Give `client` a node_modules: installed once per set of devDependencies, then linked.

    Six renders share one install (and one trip to the registry); a file lock
    keeps two test workers from installing into the same folder at once.
    """
    manifest = json.loads((client / "package.json").read_text())
    deps = manifest.get("devDependencies", {})
    key = hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16]
    cache_root.mkdir(parents=True, exist_ok=True)
    target = cache_root / key
    with (cache_root / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = target / "node_modules" / ".installed"
        if not done.exists():
            target.mkdir(exist_ok=True)
            stub = {
                "name": "client-dev-dependencies",
                "private": True,
                "devDependencies": deps,
            }
            (target / "package.json").write_text(json.dumps(stub, indent=2))
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                cwd=target,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"npm install failed:\n{result.stdout}")
            done.touch()
    link = client / "node_modules"
    if not link.exists():
        link.symlink_to(target / "node_modules", target_is_directory=True)
