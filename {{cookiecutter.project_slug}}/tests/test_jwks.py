"""`JWT_JWKS_URL`: keys from a real JSON Web Key Set server, cached, rotated in, outlived."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from {{ cookiecutter.project_slug }}.auth import AuthError, TokenVerifier
from {{ cookiecutter.project_slug }}.jwks import JwksKeys, UnknownSigningKey
from {{ cookiecutter.project_slug }}.settings import SettingsError, load_settings

from conftest import ServerFactory


class SigningKey:
    """An RSA key pair with a `kid`: signs tokens, and publishes its public half as a JWK."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self._private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def token(self, sub: str = "svc", ttl: float = 60, **claims: Any) -> str:
        payload = {"sub": sub, "exp": int(time.time() + ttl), **claims}
        return jwt.encode(payload, self._private, algorithm="RS256", headers={"kid": self.kid})


class JwksServer:
    """A JWKS over HTTP on a free loopback port, in a thread; counts the downloads."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.body: bytes | None = None  # served instead of the key set, when set
        self.downloads = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.downloads += 1
                body = jwks.body or json.dumps({"keys": [k.jwk for k in jwks.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port: the URL is unreachable from now on."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def key_one() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture(scope="module")
def key_two() -> SigningKey:
    return SigningKey("key-2")


@pytest.fixture
def jwks(key_one: SigningKey) -> Iterator[JwksServer]:
    """A JWKS server publishing `key_one`; stopped afterwards."""
    server = JwksServer([key_one])
    try:
        yield server
    finally:
        server.stop()


def jwks_settings(url: str) -> Any:
    return load_settings(_env_file=None, jwt_algorithm="RS256", jwt_jwks_url=url)


async def test_tokens_verify_with_the_key_of_their_kid(
    jwks: JwksServer, key_one: SigningKey
) -> None:
    """An RS256 token verifies against the JWKS key with its `kid`; no JWT_PUBLIC_KEY needed."""
    verifier = TokenVerifier(jwks_settings(jwks.url))
    await verifier.start()
    principal = await verifier.verify_async(key_one.token(sub="billing", publish=["orders:*"]))
    assert principal.sub == "billing" and principal.can_publish("orders:1")
    assert jwks.downloads == 1


async def test_a_forged_or_unknown_key_is_refused_saying_why(
    jwks: JwksServer, key_one: SigningKey
) -> None:
    """A token with a known `kid` but another key's signature, or an unknown `kid`, is refused."""
    verifier = TokenVerifier(jwks_settings(jwks.url))
    await verifier.start()
    impostor = SigningKey("key-1")
    with pytest.raises(AuthError, match="invalid token: Signature verification failed"):
        await verifier.verify_async(impostor.token())
    with pytest.raises(AuthError, match="no signing key with id 'nobody'"):
        await verifier.verify_async(SigningKey("nobody").token())
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify_async("not-a-jwt")
    assert (await verifier.verify_async(key_one.token())).sub == "svc"


async def test_a_rotated_in_key_is_fetched_on_its_first_token(
    jwks: JwksServer, key_one: SigningKey, key_two: SigningKey
) -> None:
    """A new `kid` triggers one download of the set, shared by every request waiting on it."""
    keys = JwksKeys(jwks.url, refetch_interval=0)
    assert await keys.refresh()
    jwks.keys.append(key_two)
    found = await asyncio.gather(*(keys.key_for("key-2") for _ in range(20)))
    assert {key.key_id for key in found} == {"key-2"}
    assert jwks.downloads == 2
    assert keys.kids == ("key-1", "key-2")


async def test_unknown_kids_refetch_at_most_once_per_interval(jwks: JwksServer) -> None:
    """Within the interval, a stream of unknown `kid`s costs one download, not one each."""
    keys = JwksKeys(jwks.url)  # the service's own interval, 10 s
    for _ in range(5):
        with pytest.raises(UnknownSigningKey):
            await keys.key_for("made-up")
    assert jwks.downloads == 1


async def test_cached_keys_keep_working_while_the_url_is_down(
    jwks: JwksServer,
    key_one: SigningKey,
    key_two: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unreachable JWKS: cached keys serve, a new `kid` is refused, and the log says why."""
    keys = JwksKeys(jwks.url, refetch_interval=0)
    assert await keys.refresh()
    jwks.stop()
    caplog.set_level(logging.INFO)
    with pytest.raises(UnknownSigningKey, match="no signing key with id 'key-2'"):
        await keys.key_for(key_two.kid)
    assert "token signed with unknown key id 'key-2': fetching the JWKS again" in caplog.text
    assert f"JWKS {jwks.url} could not be fetched" in caplog.text
    assert "keeping 1 cached key(s)" in caplog.text
    assert (await keys.key_for(key_one.kid)).key_id == "key-1"


@pytest.mark.parametrize(
    "body",
    [b"<html>sign in</html>", b'{"keys": []}', b'{"no": "keys"}', b'{"keys": [{"kty": "?"}]}'],
)
async def test_a_broken_key_set_keeps_the_cached_keys(
    jwks: JwksServer, key_one: SigningKey, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A download that isn't a usable key set is logged and changes nothing."""
    keys = JwksKeys(jwks.url, refetch_interval=0)
    assert await keys.refresh()
    jwks.body = body
    assert not await keys.refresh()
    assert "could not be fetched" in caplog.text
    assert keys.cached_key("key-1").key_id == "key-1"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"jwt_secret": "x" * 40}, "JWT_JWKS_URL needs an RS\\*/ES\\* JWT_ALGORITHM"),
        ({"jwt_algorithm": "RS256", "jwt_jwks_url": "file:///etc/keys"}, "http\\(s\\)://"),
    ],
)
def test_jwks_settings_are_checked(values: dict[str, str], message: str) -> None:
    """JWT_JWKS_URL goes with RS*/ES* only, and must be an http(s) URL."""
    with pytest.raises(SettingsError, match=message):
        load_settings(_env_file=None, **{"jwt_jwks_url": "https://idp/jwks", **values})


def publish(url: str, token: str, channel: str) -> httpx2.Response:
    return httpx2.post(
        f"{url}/channels/{channel}/events",
        json={"data": {"total": 42}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )


def test_service_with_a_jwks_url_accepts_a_rotated_in_key_and_outlives_the_url(
    start_server: ServerFactory, jwks: JwksServer, key_one: SigningKey, key_two: SigningKey
) -> None:
    """A real server: the key in the set at startup works, a rotated-in one within seconds,
    and both keep working once the JWKS URL is gone."""
    server = start_server(JWT_ALGORITHM="RS256", JWT_JWKS_URL=jwks.url)
    channel = f"orders:{uuid.uuid4().hex}"
    first = key_one.token(sub="billing", publish=["orders:*"])
    assert publish(server.url, first, channel).status_code == 202
    jwks.keys.append(key_two)
    second = key_two.token(sub="billing", publish=["orders:*"])
    deadline = time.monotonic() + 20  # the refetch interval is 10 s
    while (response := publish(server.url, second, channel)).status_code != 202:
        assert response.status_code == 401, response.text
        assert "no signing key with id 'key-2'" in response.json()["detail"]
        assert time.monotonic() < deadline, "the rotated-in key was never fetched"
        time.sleep(0.25)
    # One download at startup, then at most one per 10 s for the new kid.
    assert jwks.downloads <= 3
    jwks.stop()
    assert publish(server.url, first, channel).status_code == 202
    assert publish(server.url, second, channel).status_code == 202
    log = server.output()
    assert f"JWKS {jwks.url} fetched: 1 signing key(s), kid 'key-1'" in log
    assert "kid 'key-1', 'key-2'" in log
