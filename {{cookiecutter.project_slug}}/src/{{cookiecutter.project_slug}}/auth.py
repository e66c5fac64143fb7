"""JWT verification and the per-channel permissions a token carries."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from .permissions import matches_any
from .settings import Settings


class AuthError(Exception):
    """The token is missing, malformed, badly signed or expired."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for, and what it allows."""

    sub: str
    exp: float
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]

    def can_subscribe(self, channel: str) -> bool:
        """Whether the `subscribe` claim covers `channel`."""
        return matches_any(self.subscribe, channel)

    def can_publish(self, channel: str) -> bool:
        """Whether the `publish` claim covers `channel`."""
        return matches_any(self.publish, channel)

    def seconds_left(self, now: float | None = None) -> float:
        """Seconds until the token expires (negative once it has)."""
        return self.exp - (time.time() if now is None else now)


def _patterns(claims: Mapping[str, object], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return tuple(value)
    raise AuthError(f"claim {name!r} must be a list of channel patterns")


class TokenVerifier:
    """Checks tokens against the configured key, algorithm, audience and issuer."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.verification_key
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._max_ttl = settings.jwt_max_ttl

    def verify(self, token: str | None) -> Principal:
        """Return the token's principal, or raise `AuthError` saying what is wrong."""
        if not token:
            raise AuthError("missing token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: 'sub' must be a non-empty string")
        if self._max_ttl is not None:
            # PyJWT has checked that `iat`, when present, reads as an integer.
            check_lifetime(float(claims["exp"]), claims.get("iat"), self._max_ttl)
        return Principal(
            sub=sub,
            exp=float(claims["exp"]),
            subscribe=_patterns(claims, "subscribe"),
            publish=_patterns(claims, "publish"),
        )


def check_lifetime(exp: float, iat: object, max_ttl: float) -> None:
    """Refuse a token that lives longer than `max_ttl` seconds (`JWT_MAX_TTL`).

    Its lifetime is `exp - iat`; without `iat`, what is left of it (`exp - now`),
    which is the least it can be.
    """
    start = float(iat) if isinstance(iat, int | float | str) else time.time()
    if exp - start > max_ttl:
        raise AuthError(f"invalid token: it lives longer than JWT_MAX_TTL ({max_ttl:g} s)")


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from `Authorization: Bearer ...`, else from the `token` query parameter."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def mint_token(
    settings: Settings,
    sub: str,
    *,
    subscribe: tuple[str, ...] = (),
    publish: tuple[str, ...] = (),
    ttl: float = 3600,
) -> str:
    """Sign a token with the configured HS* secret (development and tests)."""
    if not settings.signs_tokens:
        raise AuthError(
            f"can't sign {settings.jwt_algorithm} tokens: the service holds only the public key"
        )
    now = time.time()
    claims: dict[str, object] = {
        "sub": sub,
        "iat": int(now),
        "exp": int(now + ttl),
        "subscribe": list(subscribe),
        "publish": list(publish),
    }
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.verification_key, algorithm=settings.jwt_algorithm)
