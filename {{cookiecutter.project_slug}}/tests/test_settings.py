"""Settings come from the environment, and bad values stop startup naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from {{ cookiecutter.project_slug }}.settings import SettingsError, load_settings

from conftest import TEST_SECRET
from servers import PROJECT_ROOT


def test_defaults_match_the_documented_ones() -> None:
    """Unset variables take the defaults listed in the README."""
    settings = load_settings(_env_file=None, jwt_secret=TEST_SECRET)
    assert settings.jwt_algorithm == "HS256"
    assert settings.heartbeat_interval == {{ cookiecutter.heartbeat_interval | float }}
    assert settings.history_size == 1000
    assert settings.history_ttl == 86400
    assert settings.max_message_bytes == 65536
    assert settings.outbound_queue_size == 1000
    assert settings.max_connections == 10000
    assert settings.allowed_origins == ("*",)
    assert settings.shutdown_grace == 5
    assert settings.log_level == "INFO"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each setting is the environment variable of the same name."""
    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    monkeypatch.setenv("HEARTBEAT_INTERVAL", "2.5")
    monkeypatch.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(_env_file=None)
    assert settings.heartbeat_interval == 2.5
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.log_level == "DEBUG"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    """A `.env` file provides settings too."""
    env_file = tmp_path / ".env"
    env_file.write_text(f"JWT_SECRET={TEST_SECRET}\nHISTORY_SIZE=7\n")
    assert load_settings(_env_file=env_file).history_size == 7


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEARTBEAT_INTERVAL", "0"),
        ("HEARTBEAT_INTERVAL", "soon"),
        ("SHUTDOWN_GRACE", "-1"),
        ("HISTORY_SIZE", "0"),
        ("HISTORY_TTL", "0"),
        ("MAX_MESSAGE_BYTES", "-5"),
        ("OUTBOUND_QUEUE_SIZE", "0"),
        ("MAX_CONNECTIONS", "many"),
        ("LOG_LEVEL", "loud"),
        ("JWT_ALGORITHM", "none"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str) -> None:
    """An invalid value is refused with a message naming its variable."""
    with pytest.raises(SettingsError, match=variable):
        load_settings(_env_file=None, jwt_secret=TEST_SECRET, **{variable.lower(): value})


@pytest.mark.parametrize("secret", [None, "", "short-secret"])
def test_missing_or_short_secret_is_refused(secret: str | None) -> None:
    """HS* needs a JWT_SECRET of at least 32 bytes."""
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        load_settings(_env_file=None, jwt_secret=secret)


def test_the_example_placeholder_secret_is_refused() -> None:
    """A copy of `.env.example` doesn't start a service with its well-known secret."""
    example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    placeholder = next(
        line.partition("=")[2] for line in example.splitlines() if line.startswith("JWT_SECRET=")
    )
    with pytest.raises(SettingsError, match="JWT_SECRET is the placeholder"):
        load_settings(_env_file=None, jwt_secret=placeholder)


def test_public_key_may_be_a_pem_or_a_path(tmp_path: Path) -> None:
    """RS*/ES* read JWT_PUBLIC_KEY as PEM text or as a file holding it."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    path = tmp_path / "key.pem"
    path.write_text(pem)
    for value in (pem, str(path)):
        settings = load_settings(_env_file=None, jwt_algorithm="ES256", jwt_public_key=value)
        assert settings.verification_key.strip() == pem.strip()


def test_unreadable_public_key_is_refused(tmp_path: Path) -> None:
    """A JWT_PUBLIC_KEY path that can't be read stops startup."""
    with pytest.raises(SettingsError, match="JWT_PUBLIC_KEY"):
        load_settings(
            _env_file=None, jwt_algorithm="RS256", jwt_public_key=str(tmp_path / "missing.pem")
        )
    with pytest.raises(SettingsError, match="JWT_PUBLIC_KEY"):
        load_settings(_env_file=None, jwt_algorithm="RS256")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEARTBEAT_INTERVAL", "-1"),
        ("JWT_SECRET", "too-short"),
        ("JWT_SECRET", "change-me-to-at-least-32-random-bytes"),
        ("MAX_CONNECTIONS", "0"),
    ],
)
def test_uvicorn_exits_non_zero_naming_the_variable(
    service_env: dict[str, str], tmp_path: Path, variable: str, value: str
) -> None:
    """Under plain uvicorn, an invalid setting ends startup at once with a clear message."""
    env = {**service_env, variable: value, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "{{ cookiecutter.project_slug }}.main:app", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode != 0
    assert variable in result.stderr
