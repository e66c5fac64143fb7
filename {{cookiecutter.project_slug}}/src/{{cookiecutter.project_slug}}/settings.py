"""Every setting of the service, read from the environment (and `.env`) once."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"
]
MIN_SECRET_BYTES = 32
# `.env.example` ships a readable placeholder; a copy of it must not start a service.
PLACEHOLDER_SECRET_PREFIX = "change-me"


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    """Service configuration; each field is the environment variable of the same name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    jwt_secret: str | None = Field(default=None, repr=False)
    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_public_key: str | None = Field(default=None, repr=False)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
{% if cookiecutter.broadcaster == "redis" %}
    redis_url: str = "redis://localhost:6379/0"
    redis_cluster: bool = False
{% endif %}
    heartbeat_interval: PositiveFloat = {{ cookiecutter.heartbeat_interval | float }}
    history_size: PositiveInt = 1000
    history_ttl: PositiveInt = 86400
    max_message_bytes: PositiveInt = 65536
    outbound_queue_size: PositiveInt = 1000
    max_connections: PositiveInt = 10000
{% if cookiecutter.transport != "sse" %}
    ws_rate_limit: PositiveInt = 50
{% endif %}
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ("*",)
    shutdown_grace: PositiveFloat = 5.0
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "INFO"
    # Development only: `/demo`, a page that can mint tokens for a browser on this machine.
    demo_page: bool = False
    # Bounds that keep one client (or one token) from taking what everyone shares.
{% if cookiecutter.broadcaster == "memory" %}
    history_max_bytes: PositiveInt = 268435456
{% endif %}
    max_connections_per_subject: NonNegativeInt = 0  # 0: no limit
    jwt_max_ttl: PositiveInt | None = None  # seconds; unset: any lifetime
    # `development` (the rendered `.env` says so) silences the startup warnings.
    environment: Literal["development", "production"] = "production"

    # Keys from an identity provider, and the shape of log lines.
    jwt_jwks_url: str | None = None
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, values: dict[str, object]) -> dict[str, object]:
        origins = values.get("allowed_origins")
        if isinstance(origins, str):
            values["allowed_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
        level = values.get("log_level")
        if isinstance(level, str):
            values["log_level"] = level.upper()
        log_format = values.get("log_format")
        if isinstance(log_format, str):
            values["log_format"] = log_format.lower()
        return values

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        if self.jwt_algorithm.startswith("HS"):
            if not self.jwt_secret:
                raise ValueError("JWT_SECRET is required for HS* algorithms")
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
            if self.jwt_secret.startswith(PLACEHOLDER_SECRET_PREFIX):
                raise ValueError(
                    "JWT_SECRET is the placeholder from .env.example: set a random one, e.g. "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
            if self.jwt_jwks_url:
                raise ValueError("JWT_JWKS_URL needs an RS*/ES* JWT_ALGORITHM, not HS*")
        elif self.jwt_jwks_url:
            if not self.jwt_jwks_url.startswith(("https://", "http://")):
                raise ValueError("JWT_JWKS_URL must be an http(s):// URL")
        else:
            _ = self.verification_key  # fails early when the key can't be read
        return self

    @property
    def signs_tokens(self) -> bool:
        """Whether this service holds the key that signs tokens (HS*)."""
        return self.jwt_algorithm.startswith("HS")

    @cached_property
    def verification_key(self) -> str:
        """The key that verifies tokens: the secret, or the PEM public key."""
        if self.signs_tokens:
            assert self.jwt_secret is not None
            return self.jwt_secret
        raw = (self.jwt_public_key or "").strip()
        if not raw:
            raise ValueError(f"JWT_PUBLIC_KEY is required for {self.jwt_algorithm}")
        if "-----BEGIN" in raw:
            return raw
        try:
            return Path(raw).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"JWT_PUBLIC_KEY file {raw!r} can't be read: {exc.strerror}") from exc

    @property
    def allows_any_origin(self) -> bool:
        """Whether `ALLOWED_ORIGINS` is the wildcard."""
        return "*" in self.allowed_origins

    def startup_warnings(self) -> list[str]:
        """Settings that are fine for development but risky in production."""
        if self.environment == "development":
            return []
        warnings = []
        if self.allows_any_origin and self.jwt_audience is None:
            warnings.append(
                "ALLOWED_ORIGINS is * and JWT_AUDIENCE is unset: any web page can use a "
                "visitor's token here, and tokens minted for other services are accepted; "
                "list your origins, set JWT_AUDIENCE (or ENVIRONMENT=development)"
            )
        return warnings


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}" if name else message)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
