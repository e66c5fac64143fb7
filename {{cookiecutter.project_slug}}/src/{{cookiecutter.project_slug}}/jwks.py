"""Signing keys from a JSON Web Key Set URL (an identity provider's `jwks_uri`).

Keys are cached by `kid`. A token signed with a key the cache doesn't hold
triggers one download of the set (at most one per `REFETCH_INTERVAL`, shared
by every request waiting on it), so a key the provider rotates in works within
seconds. A failed download keeps the cached keys: tokens signed with them go on
working while the URL is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from typing import Any

from jwt import PyJWK, PyJWKSet, PyJWTError

logger = logging.getLogger(__name__)

REFETCH_INTERVAL = 10.0
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 1 << 20


class UnknownSigningKey(Exception):
    """No cached key has the token's `kid`, and the set can't be fetched again yet."""


class JwksKeys:
    """The keys of one JWKS URL, cached and fetched again when a token needs a new one."""

    def __init__(
        self,
        url: str,
        *,
        refetch_interval: float = REFETCH_INTERVAL,
        timeout: float = FETCH_TIMEOUT,
    ) -> None:
        self._url = url
        self._refetch_interval = refetch_interval
        self._timeout = timeout
        self._keys: dict[str | None, PyJWK] = {}
        self._last_fetch: float | None = None
        self._lock = asyncio.Lock()

    @property
    def kids(self) -> tuple[str | None, ...]:
        """The key ids cached now."""
        return tuple(self._keys)

    async def refresh(self) -> bool:
        """Download the set now; whether that worked (on failure the cache is kept)."""
        async with self._lock:
            return await self._fetch()

    def cached_key(self, kid: str | None) -> PyJWK:
        """The cached key with id `kid`; `UnknownSigningKey` if there is none."""
        key = self._lookup(kid)
        if key is None:
            raise UnknownSigningKey(f"no signing key with id {kid!r} in the JWKS")
        return key

    async def key_for(self, kid: str | None) -> PyJWK:
        """The key with id `kid` (a token without one: the set's only key).

        Raises `UnknownSigningKey` when neither the cache nor a fresh download
        (if one is allowed yet) has it.
        """
        key = self._lookup(kid)
        if key is not None:
            return key
        async with self._lock:
            # Another request may have fetched the set while this one waited.
            if self._lookup(kid) is None and self._may_fetch():
                logger.info("token signed with unknown key id %r: fetching the JWKS again", kid)
                await self._fetch()
        return self.cached_key(kid)

    def _lookup(self, kid: str | None) -> PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return (
            self._last_fetch is None
            or time.monotonic() - self._last_fetch >= self._refetch_interval
        )

    async def _fetch(self) -> bool:
        self._last_fetch = time.monotonic()
        try:
            # urllib blocks: the download runs in a thread, never on the event loop.
            document = await asyncio.to_thread(_download, self._url, self._timeout)
            keys = _signing_keys(document)
        except (OSError, ValueError, PyJWTError) as exc:
            logger.warning(
                "JWKS %s could not be fetched (%s); keeping %d cached key(s)",
                self._url,
                exc,
                len(self._keys),
            )
            return False
        self._keys = keys
        logger.info(
            "JWKS %s fetched: %d signing key(s), kid %s",
            self._url,
            len(keys),
            ", ".join(repr(kid) for kid in keys),
        )
        return True


def _download(url: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    # Settings allow only http(s) URLs here, never file: or others.
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"JWKS larger than {MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body)


def _signing_keys(document: Any) -> dict[str | None, PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JSON Web Key Set (no "keys" list)')
    # Keys published for encryption only are no use for checking signatures.
    usable = [k for k in document["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    return {key.key_id: key for key in PyJWKSet(usable).keys}
