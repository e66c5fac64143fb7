"""JWT verification and the per-channel permissions a token carries."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import jwt

from .jwks import JwksKeys, UnknownSigningKey
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
    # Every claim of the token, for authorization rules that use more than the
    # channel patterns (roles, tenant, scopes).
    claims: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

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


# How many verified tokens a verifier remembers (see `TokenVerifier`).
VERIFIED_TOKENS_KEPT = 1024


class TokenVerifier:
    """Checks tokens against the configured key (or JWKS), algorithm, audience and issuer.

    With a configured key (no JWKS), a token that verified is remembered, with
    its principal, until it expires: a publisher sends the same token with every
    event, and verifying it again (base64, signature, claims) was a large part
    of each publish. Nothing but time can change the answer, since the key stays
    as it is while the process runs; so an expired token is refused as before.
    At most `VERIFIED_TOKENS_KEPT` are kept, the oldest forgotten first. With a
    JWKS, every token is verified each time: its keys may be rotated away.
    """

    def __init__(self, settings: Settings) -> None:
        self._jwks = JwksKeys(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
        self._key = None if self._jwks else settings.verification_key
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._max_ttl = settings.jwt_max_ttl
        self._verified: dict[str, Principal] = {}

    async def start(self) -> None:
        """Fetch the JWKS, if one is configured (a failure is logged, not fatal)."""
        if self._jwks is not None:
            await self._jwks.refresh()

    def verify(self, token: str | None) -> Principal:
        """Return the token's principal, or raise `AuthError` saying what is wrong.

        With a JWKS, only keys already cached are used: see `verify_async`.
        """
        if not token:
            raise AuthError("missing token")
        if self._jwks is None:
            assert self._key is not None
            return self._verify_with_key(token, self._key)
        try:
            key = self._jwks.cached_key(_key_id(token))
        except UnknownSigningKey as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return self._decode(token, key)

    async def verify_async(self, token: str | None) -> Principal:
        """`verify`, fetching the JWKS again (at most every 10 s) for a new key id."""
        if not token or self._jwks is None:
            return self.verify(token)
        try:
            key = await self._jwks.key_for(_key_id(token))
        except UnknownSigningKey as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return self._decode(token, key)

    def _verify_with_key(self, token: str, key: str) -> Principal:
        verified = self._verified
        principal = verified.get(token)
        if principal is not None:
            if principal.exp > time.time():  # as PyJWT has it: expired once `exp <= now`
                return principal
            del verified[token]  # decoded again below, to be refused as expired
        principal = self._decode(token, key)
        if len(verified) >= VERIFIED_TOKENS_KEPT:
            del verified[next(iter(verified))]
        verified[token] = principal
        return principal

    def _decode(self, token: str, key: str | jwt.PyJWK) -> Principal:
        try:
            claims = jwt.decode(
                token,
                key,
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
            # Read-only: a remembered token's principal serves every request that sends it.
            claims=MappingProxyType(claims),
        )


def check_lifetime(exp: float, iat: object, max_ttl: float) -> None:
    """Refuse a token that lives longer than `max_ttl` seconds (`JWT_MAX_TTL`).

    Its lifetime is `exp - iat`; without `iat`, what is left of it (`exp - now`),
    which is the least it can be.
    """
    start = float(iat) if isinstance(iat, int | float | str) else time.time()
    if exp - start > max_ttl:
        raise AuthError(f"invalid token: it lives longer than JWT_MAX_TTL ({max_ttl:g} s)")


def _key_id(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return kid if isinstance(kid, str) else None


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
