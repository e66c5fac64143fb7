"""Tokens: signature, expiry, audience and issuer, and the permissions they carry."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from {{ cookiecutter.project_slug }} import auth
from {{ cookiecutter.project_slug }}.auth import AuthError, TokenVerifier, bearer_token, mint_token
from {{ cookiecutter.project_slug }}.settings import Settings, load_settings

from conftest import TEST_SECRET, TokenFactory


def test_valid_token_gives_its_principal(settings: Settings, make_token: TokenFactory) -> None:
    """A good token yields its subject, expiry and channel patterns."""
    token = make_token(sub="alice", subscribe=["room:*"], publish=["room:1"])
    principal = TokenVerifier(settings).verify(token)
    assert principal.sub == "alice"
    assert principal.subscribe == ("room:*",)
    assert principal.publish == ("room:1",)
    assert 50 < principal.seconds_left() <= 60
    assert principal.can_subscribe("room:42") and not principal.can_subscribe("lobby")
    assert principal.can_publish("room:1") and not principal.can_publish("room:2")


@pytest.mark.parametrize(
    ("token_of", "message"),
    [
        (lambda make: None, "missing token"),
        (lambda make: "", "missing token"),
        (lambda make: "not.a.jwt", "invalid token"),
        (lambda make: make(ttl=-5), "token expired"),
        (lambda make: make()[:-3] + "abc", "invalid token"),
        (lambda make: jwt.encode({"sub": "a", "exp": time.time() + 60}, "x" * 40), "invalid"),
        (lambda make: jwt.encode({"sub": "a"}, TEST_SECRET), "exp"),
        (lambda make: jwt.encode({"exp": time.time() + 60}, TEST_SECRET), "sub"),
        (lambda make: make(subscribe="room:*x", publish=5), "publish"),
    ],
)
def test_bad_tokens_are_refused_saying_why(
    settings: Settings,
    make_token: TokenFactory,
    token_of: Callable[[TokenFactory], str | None],
    message: str,
) -> None:
    """Missing, malformed, badly signed, expired or incomplete tokens raise AuthError."""
    with pytest.raises(AuthError, match=message):
        TokenVerifier(settings).verify(token_of(make_token))


def test_algorithm_none_is_refused(settings: Settings) -> None:
    """An unsigned token never passes."""
    token = jwt.encode({"sub": "a", "exp": time.time() + 60}, None, algorithm="none")
    with pytest.raises(AuthError):
        TokenVerifier(settings).verify(token)


def test_missing_claims_grant_nothing(settings: Settings) -> None:
    """A token without `subscribe`/`publish` claims may do nothing."""
    token = jwt.encode({"sub": "bob", "exp": time.time() + 60}, TEST_SECRET)
    principal = TokenVerifier(settings).verify(token)
    assert not principal.can_subscribe("anything")
    assert not principal.can_publish("anything")


def test_audience_and_issuer_are_checked_when_configured(
    settings_factory: Callable[..., Settings], make_token: TokenFactory
) -> None:
    """With JWT_AUDIENCE/JWT_ISSUER set, tokens must carry matching `aud`/`iss`."""
    verifier = TokenVerifier(settings_factory(jwt_audience="svc", jwt_issuer="https://idp"))
    assert verifier.verify(make_token(aud="svc", iss="https://idp")).sub == "alice"
    for claims in ({"aud": "other", "iss": "https://idp"}, {"aud": "svc"}, {"iss": "https://idp"}):
        with pytest.raises(AuthError):
            verifier.verify(make_token(**claims))


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_algorithms_verify(algorithm: str) -> None:
    """RS256 and ES256 tokens verify against JWT_PUBLIC_KEY."""
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = load_settings(
        _env_file=None, jwt_algorithm=algorithm, jwt_public_key=public_pem.decode()
    )
    token = jwt.encode(
        {"sub": "carol", "exp": time.time() + 60, "subscribe": ["*"]}, private, algorithm=algorithm
    )
    assert TokenVerifier(settings).verify(token).can_subscribe("x")
    forged = jwt.encode({"sub": "carol", "exp": time.time() + 60}, TEST_SECRET)
    with pytest.raises(AuthError):
        TokenVerifier(settings).verify(forged)


def test_minted_tokens_verify(settings: Settings) -> None:
    """`mint_token` (behind the CLI) signs tokens the service accepts."""
    token = mint_token(settings, "dave", subscribe=("a:*",), publish=("a:1",), ttl=30)
    principal = TokenVerifier(settings).verify(token)
    assert (principal.sub, principal.subscribe, principal.publish) == ("dave", ("a:*",), ("a:1",))


def test_a_verified_token_is_remembered_until_it_expires(
    settings: Settings, make_token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified once while valid; past its `exp` it is verified again, and refused."""
    decoded: list[str] = []
    decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting_decode)
    verifier = TokenVerifier(settings)
    token, other = make_token(sub="alice", ttl=60), make_token(sub="bob", ttl=60)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert verifier.verify(other).sub == "bob"
    assert decoded == [token, other]
    with pytest.raises(TypeError):  # shared by every request with the token: read-only
        first.claims["sub"] = "mallory"  # type: ignore[index]
    # Past `exp` on our clock; PyJWT reads its own, so it is told to look 61 s ahead.
    monkeypatch.setattr(auth.time, "time", lambda: first.exp)
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **k: decode(*a, **k, leeway=-61))
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(token)


def test_remembered_tokens_are_bounded(
    settings: Settings, make_token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond `VERIFIED_TOKENS_KEPT`, the oldest token is forgotten (verified again)."""
    monkeypatch.setattr(auth, "VERIFIED_TOKENS_KEPT", 2)
    verifier = TokenVerifier(settings)
    tokens = [make_token(sub=name) for name in ("a", "b", "c")]
    principals = [verifier.verify(token) for token in tokens]
    assert verifier.verify(tokens[2]) is principals[2]
    assert verifier.verify(tokens[1]) is principals[1]
    assert verifier.verify(tokens[0]) is not principals[0]


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer  abc ", "q", "abc"),
        (None, "q", "q"),
        ("Basic xyz", "q", "q"),
        ("Bearer ", None, None),
        (None, "", None),
    ],
)
def test_bearer_token_prefers_the_header(
    header: str | None, query: str | None, expected: str | None
) -> None:
    """The Authorization header wins; the `token` query parameter is the fallback."""
    assert bearer_token(header, query) == expected
