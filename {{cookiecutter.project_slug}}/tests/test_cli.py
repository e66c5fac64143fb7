"""`python -m {{ cookiecutter.project_slug }} token` mints development tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from conftest import TEST_SECRET
from servers import PROJECT_ROOT


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.project_slug }}", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(PROJECT_ROOT / "src"), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_token_command_prints_a_token_with_the_given_claims(tmp_path: Path) -> None:
    """Flags become claims; --subscribe/--publish repeat for several patterns."""
    result = cli(
        "token",
        "--sub",
        "alice",
        "--subscribe",
        "room:*",
        "--subscribe",
        "dm:alice",
        "--publish",
        "room:*",
        "--ttl",
        "120",
        env={"JWT_SECRET": TEST_SECRET},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["subscribe"] == ["room:*", "dm:alice"]
    assert claims["publish"] == ["room:*"]
    assert 100 < claims["exp"] - claims["iat"] <= 120


def test_token_command_reads_the_dotenv_secret(tmp_path: Path) -> None:
    """The secret comes from `.env` like the service's own settings."""
    (tmp_path / ".env").write_text(f"JWT_SECRET={TEST_SECRET}\n")
    result = cli("token", "--sub", "bob", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])["sub"] == "bob"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "JWT_SECRET"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"JWT_ALGORITHM": "RS256", "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----x"}, "can't sign"),
    ],
)
def test_token_command_fails_clearly(tmp_path: Path, env: dict[str, str], message: str) -> None:
    """Without a usable HS* secret it exits non-zero saying why."""
    result = cli("token", "--sub", "alice", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""
