"""`make dev` without Redis: the bundled server is started only when REDIS_URL is unset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from {{ cookiecutter.project_slug }} import devredis

PACKAGE = "{{ cookiecutter.project_slug }}"
SRC = Path(__file__).resolve().parent.parent / "src"


def test_redis_url_comes_from_the_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDIS_URL in the environment wins over `.env`."""
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_URL=redis://from-env-file:6379/0\n")
    monkeypatch.setenv("REDIS_URL", "redis://from-environment:6379/1")
    assert devredis.configured_url(env_file) == "redis://from-environment:6379/1"


def test_redis_url_is_read_from_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the variable, `.env` decides (quotes and `export` allowed)."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("# settings\nJWT_SECRET=x\nexport REDIS_URL='redis://cache:6379/2'\n")
    assert devredis.configured_url(env_file) == "redis://cache:6379/2"
    env_file.write_text("JWT_SECRET=x\n")
    assert devredis.configured_url(env_file) is None
    assert devredis.configured_url(tmp_path / "missing.env") is None


def test_without_redis_url_a_bundled_server_serves_the_command(tmp_path: Path) -> None:
    """The command runs with REDIS_URL pointing at a live server, which is gone afterwards."""
    probe = (
        "import os, redis; url = os.environ['REDIS_URL']; "
        "assert redis.Redis.from_url(url).ping(); print(url)"
    )
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = str(SRC)
    result = subprocess.run(
        [sys.executable, "-m", f"{PACKAGE}.devredis", sys.executable, "-c", probe],
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("redis://127.0.0.1:")
    assert "bundled Valkey server" in result.stderr
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_a_command_is_required() -> None:
    """Without a command it explains its usage."""
    assert devredis.main([]) == 2
