"""Fixtures shared by every test: settings, tokens, broadcasters and real servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }}.broadcast import Broadcaster, create_broadcaster
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings, load_settings

{% if cookiecutter.broadcaster == "redis" %}
from redis_cluster_nodes import redis_cluster  # noqa: F401  (a fixture)
from redis_server import redis_url  # noqa: F401  (a fixture)
{% endif %}
from servers import ServerProcess, channel_name

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
TokenFactory = Callable[..., str]
ServerFactory = Callable[..., ServerProcess]
SharedServerFactory = Callable[..., ServerProcess]


def base_service_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for a service under test: fast heartbeats, a known secret.

    A plain function too, so module-scoped servers can use it (`service_env` is per test).
    """
    return {
        "JWT_SECRET": TEST_SECRET,
        "HEARTBEAT_INTERVAL": "0.2",
        "LOG_LEVEL": "INFO",
        "SHUTDOWN_GRACE": "3",
{% if cookiecutter.broadcaster == "redis" %}
        "REDIS_URL": request.getfixturevalue("redis_url"),
{% endif %}
    }


@pytest.fixture
def channel() -> str:
    """A channel no other test of a shared server uses."""
    return channel_name()


@pytest.fixture
def service_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """`base_service_env` for this test."""
    return base_service_env(request)


@pytest.fixture
def settings_factory(service_env: dict[str, str]) -> Callable[..., Settings]:
    """Build settings from `service_env` plus overrides (lowercase names)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {k.lower(): v for k, v in service_env.items()}
        values.update(overrides)
        return load_settings(_env_file=None, **values)

    return build


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    """The default test settings."""
    return settings_factory()


@pytest.fixture
def make_token() -> TokenFactory:
    """Sign a test token: `make_token(sub=..., subscribe=[...], publish=[...], ttl=...)`."""

    def make(
        sub: str = "alice",
        subscribe: list[str] | None = None,
        publish: list[str] | None = None,
        ttl: float = 60,
        **claims: Any,
    ) -> str:
        payload: dict[str, Any] = {
            "sub": sub,
            "exp": int(time.time() + ttl),
            "subscribe": ["*"] if subscribe is None else subscribe,
            "publish": ["*"] if publish is None else publish,
            **claims,
        }
        return jwt.encode(payload, TEST_SECRET, algorithm="HS256")

    return make


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An in-process client of an app with the test settings (lifespan running)."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def broadcaster(settings: Settings) -> AsyncIterator[Broadcaster]:
    """The configured broadcaster, started."""
    instance = create_broadcaster(settings)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture(scope="module")
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedServerFactory]:
    """Start servers shared by one module's tests: `shared_server(**ENV_OVERRIDES)`.

    Each is ready when returned and killed after the module; its tests keep to
    channels and subjects of their own.
    """
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        log = tmp_path_factory.mktemp("shared-server") / "server.log"
        server = ServerProcess({**base_service_env(request), **env}, log)
        started.append(server)
        return server.wait_ready()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_server(service_env: dict[str, str], tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real uvicorn servers: `start_server(workers=1, **ENV_OVERRIDES)`; all killed after.

    `factory="module:function"` serves the app that function builds (from `tests/`);
    `health_path` is the URL readiness is polled on (under a mounted app's prefix).
    """
    started: list[ServerProcess] = []

    def start(
        *,
        workers: int = 1,
        port: int | None = None,
        wait: bool = True,
        factory: str | None = None,
        health_path: str = "/healthz",
        **env: str,
    ) -> ServerProcess:
        log = tmp_path / f"server-{len(started)}.log"
        server = ServerProcess(
            {**service_env, **env},
            log,
            workers=workers,
            port=port,
            **({"app": factory, "extra_args": ("--factory",)} if factory else {}),
            health_path=health_path,
        )
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.stop()
