"""A JSON Web Key Set fetched from the identity provider, cached and refreshed.

Keys are fetched once, used for ``cache_seconds``, then fetched again in the
background while the old ones keep verifying. A token signed with a key id the
set does not have (the provider rotated its keys) triggers a fetch at once,
but at most once per ``min_refresh_seconds``: a stream of forged key ids
cannot turn the service into a load generator against the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from nativekit._telemetry.logging import get_logger
from nativekit.auth._principal import InvalidToken
from nativekit.errors import BackendUnavailable

log = get_logger(component="auth")


class KeySet:
    """The public signing keys of one JWKS URL.

    Args:
        url: ``https://…/jwks.json`` (or ``file:///path/jwks.json``).
        cache_seconds: time fetched keys are used before the set is fetched again.
        min_refresh_seconds: shortest time between fetches caused by an unknown key id.
        timeout: seconds one fetch may take.
        transport: an httpx transport (tests pass a mock; default: a real connection).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout = timeout
        self._transport = transport
        self.clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._fetch: asyncio.Task[None] | None = None
        #: Fetches done so far (tests and metrics read it).
        self.fetches = 0

    async def jwk(self, kid: str | None) -> dict[str, Any]:
        """The JWK with id ``kid`` (or the only key when ``kid`` is None).

        Raises:
            InvalidToken: no such key, even after a fetch (or a fetch is not allowed yet).
            BackendUnavailable: no key could ever be fetched.
        """
        now = self.clock()
        if not self._keys:
            await self._refresh()
        elif now - self._fetched_at > self.cache_seconds:
            self._refresh_in_background()
        found = self._find(kid)
        if found is None and now - self._attempted_at >= self.min_refresh_seconds:
            await self._refresh()
            found = self._find(kid)
        if found is None:
            raise InvalidToken(
                f"the token's key id {kid!r} is not in the issuer's key set"
                if kid is not None
                else "the token names no key id ('kid') and the key set has several keys"
            )
        return found

    async def prefetch(self) -> None:
        """Fetch the key set unless it is already in hand; a failure is logged, not raised.

        The first request tries again: a service starts even while its identity
        provider is unreachable (requests needing a token get 503 until then).
        """
        if not self._keys:
            with contextlib.suppress(BackendUnavailable):  # logged by _load
                await self._refresh()

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _refresh_in_background(self) -> None:
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.create_task(self._fetch_quietly())

    async def _fetch_quietly(self) -> None:
        with contextlib.suppress(BackendUnavailable):  # logged; the keys in hand keep working
            await self._load()

    async def _refresh(self) -> None:
        """Fetch the key set; concurrent callers share one fetch."""
        if self._fetch is None or self._fetch.done():
            self._fetch = asyncio.create_task(self._load())
        await asyncio.shield(self._fetch)

    async def _load(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        try:
            document = await self._download()
            keys = _signing_keys(document)
        except (OSError, httpx.HTTPError, ValueError) as exc:
            log.warning("auth.jwks.fetch_failed", url=self.url, error=str(exc))
            if self._keys:
                return
            raise BackendUnavailable(
                f"cannot fetch the JWT signing keys from {self.url}: {exc}. "
                "Is NATIVEKIT_AUTH_JWKS_URL right and the identity provider reachable?"
            ) from exc
        self._keys = keys
        self._fetched_at = self.clock()
        log.info("auth.jwks.fetched", url=self.url, keys=sorted(keys))

    async def _download(self) -> Any:
        parts = urlsplit(self.url)
        if parts.scheme == "file":
            text = await asyncio.to_thread(Path(unquote(parts.path)).read_text, "utf-8")
            return json.loads(text)
        async with httpx.AsyncClient(transport=self._transport, timeout=self.timeout) as client:
            response = await client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()

    async def aclose(self) -> None:
        """Stop a fetch in progress."""
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
            await asyncio.gather(self._fetch, return_exceptions=True)


def _signing_keys(document: Any) -> dict[str, dict[str, Any]]:
    """The public signature keys of a JWKS document by key id.

    Symmetric (``oct``) keys and keys for encryption are left out: a key set is
    public, so a shared secret in it would let anyone sign.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the key set is not a JSON object with a 'keys' list")
    keys: dict[str, dict[str, Any]] = {}
    for index, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if jwk.get("use", "sig") != "sig" or "d" in jwk:
            continue
        keys[str(jwk.get("kid", f"#{index}"))] = jwk
    if not keys:
        raise ValueError("the key set has no public signature key (RSA, EC or OKP)")
    return keys
