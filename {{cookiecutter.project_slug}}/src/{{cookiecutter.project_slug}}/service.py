"""The parts of a running service, built once per app and shared by every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from .auth import AuthError, Principal, TokenVerifier, bearer_token
from .authorization import Authorizer
from .broadcast import Broadcaster
from .connections import ConnectionRegistry
from .metrics import Metrics
from .metrics_group import MetricsGroup
from .permissions import INVALID_CHANNEL, is_valid_channel
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Service:
    """Settings, token verifier, authorization rule, broadcaster, connections and metrics
    (its own and its worker group's)."""

    settings: Settings
    verifier: TokenVerifier
    authorizer: Authorizer
    broadcaster: Broadcaster
    connections: ConnectionRegistry
    metrics: Metrics
    metrics_group: MetricsGroup


def service_of(connection: HTTPConnection) -> Service:
    """The `Service` of the app handling this request or WebSocket."""
    service: Service = connection.app.state.service
    return service


async def get_service(connection: HTTPConnection) -> Service:
    """`service_of` as a FastAPI dependency.

    `async` on purpose: FastAPI runs a plain `def` dependency in its threadpool,
    a thread hop on every publish and every stream that measurably cost throughput.
    """
    return service_of(connection)


# A route's parameter of this type receives the app's `Service`.
ServiceDep = Annotated[Service, Depends(get_service)]


async def authenticate(service: Service, connection: HTTPConnection) -> Principal:
    """The request's principal; raises HTTP 401 for a missing, invalid or expired token."""
    token = bearer_token(
        connection.headers.get("authorization"), connection.query_params.get("token")
    )
    try:
        return await service.verifier.verify_async(token)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def check_channel(channel: str) -> None:
    """Raise HTTP 400 unless `channel` is a valid channel name."""
    if not is_valid_channel(channel):
        raise HTTPException(400, INVALID_CHANNEL)
