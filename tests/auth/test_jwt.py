"""JWT routes with real signed tokens and a JWKS served over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwks_support import AUDIENCE, ISSUER, JWKSServer, SigningKey, ec_key, jwks_server, rsa_key
from pydantic import BaseModel

import nativekit
from nativekit.auth import Principal
from nativekit.testing import serve


class NewOrder(BaseModel):
    """Body."""

    sku: str


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The issuer's current RSA key."""
    return rsa_key("rsa-1")


@pytest.fixture
def jwks(key: SigningKey) -> Iterator[JWKSServer]:
    """A JWKS endpoint serving ``key``."""
    with jwks_server(key) as server:
        yield server


def make_service(jwks_url: str, **auth: Any) -> nativekit.Service:
    """A service accepting JWTs of ISSUER for AUDIENCE, with three kinds of route."""
    settings = nativekit.Settings(
        _env_file=None,
        auth={
            "jwks_url": jwks_url,
            "issuer": ISSUER,
            "audience": [AUDIENCE],
            "jwks_min_refresh_seconds": 60,
            **auth,
        },
        telemetry={"tracing_enabled": False},
    )
    svc = nativekit.Service("orders", settings=settings)

    @svc.get("/public")
    async def public() -> dict[str, str]:
        return {"hello": "world"}

    @svc.get("/me")
    async def me(principal: Principal) -> dict[str, Any]:
        return {"subject": principal.subject, "scopes": sorted(principal.scopes)}

    @svc.get("/maybe")
    async def maybe(principal: Principal | None) -> dict[str, Any]:
        return {"subject": principal.subject if principal else None}

    @svc.post("/orders", status_code=201, scopes=["orders:write"])
    async def create(body: NewOrder, principal: Principal) -> dict[str, str]:
        return {"sku": body.sku, "by": principal.subject}

    return svc


@pytest.fixture
async def client(jwks: JWKSServer) -> AsyncIterator[httpx.AsyncClient]:
    """A started service using ``jwks``."""
    async with serve(make_service(jwks.url)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response, status: int, error: str | None, detail: str) -> None:
    """A problem+json refusal with the RFC 6750 challenge."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="orders"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge


async def test_valid_token_reaches_the_handler_with_its_principal(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """A good token: 200, and the handler receives the subject and scopes."""
    token = key.sign({"scope": "orders:read orders:write"})
    response = await client.get("/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"subject": "alice", "scopes": ["orders:read", "orders:write"]}


async def test_missing_token_is_401_with_a_bare_challenge(client: httpx.AsyncClient) -> None:
    """No Authorization header: 401 asking for a bearer token, no error code (RFC 6750 3.1)."""
    response = await client.get("/me")
    assert_refused(response, 401, None, "needs a bearer token")
    basic = await client.get("/me", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert_refused(basic, 401, None, "needs a bearer token")


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"aud": "billing-api"}, "not meant for this service"),
        ({"iss": "https://evil.example.test/"}, "expected issuer"),
        ({"aud": None}, "'aud' claim"),
        ({"exp": None}, "'exp' claim"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"sub": None}, "no subject"),
    ],
    ids=["expired", "wrong-aud", "wrong-iss", "no-aud", "no-exp", "future", "no-sub"],
)
async def test_bad_claims_are_401_invalid_token(
    client: httpx.AsyncClient, key: SigningKey, claims: dict[str, Any], detail: str
) -> None:
    """Expiry, audience, issuer and subject are checked; the reason is in the problem."""
    response = await client.get("/me", headers=bearer(key.sign(claims)))
    assert_refused(response, 401, "invalid_token", detail)


async def test_expired_within_leeway_is_still_accepted(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """A token expired 5 s ago passes with the default 30 s clock-skew leeway."""
    response = await client.get("/me", headers=bearer(key.sign({"exp": int(time.time()) - 5})))
    assert response.status_code == 200


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


async def test_alg_none_is_refused(client: httpx.AsyncClient, key: SigningKey) -> None:
    """An unsigned token ('alg': 'none') is refused, whatever its claims."""
    claims = jwt.decode(key.sign(), options={"verify_signature": False})
    token = _unsigned(claims, {"alg": "none", "typ": "JWT", "kid": key.kid})
    response = await client.get("/me", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", "algorithm 'none' is not accepted")


async def test_hs256_signed_with_the_public_key_is_refused(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """HS/RS confusion: HMAC keyed with the published RSA public key does not verify."""
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(key.sign(), options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = _unsigned(claims, header)[:-1].encode()
    import hashlib
    import hmac

    mac = hmac.new(pem, signing_input, hashlib.sha256).digest()
    token = signing_input.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    response = await client.get("/me", headers=bearer(token))
    assert_refused(response, 401, "invalid_token", "algorithm 'HS256' is not accepted")


async def test_es256_token_naming_the_rsa_key_is_refused(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """A token whose alg does not fit the key it names (ES256 on an RSA key) is refused."""
    forged = ec_key(key.kid).sign()
    response = await client.get("/me", headers=bearer(forged))
    assert_refused(response, 401, "invalid_token", "not its key's")


async def test_tampered_payload_fails_the_signature(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """Changing a claim after signing breaks the signature."""
    head, _, sig = key.sign({"scope": "orders:read"}).split(".")
    claims = jwt.decode(key.sign(), options={"verify_signature": False})
    claims["scope"] = "orders:write"
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await client.get("/me", headers=bearer(f"{head}.{body}.{sig}"))
    assert_refused(response, 401, "invalid_token", "signature is not valid")


async def test_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    """A bearer value that is no JWT at all is a 401, not a 500."""
    response = await client.get("/me", headers=bearer("not-a-jwt"))
    assert_refused(response, 401, "invalid_token", "not a JWT")


async def test_missing_scope_is_403_insufficient_scope(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """A valid token without the route's scope: 403 naming it; with it: the handler runs."""
    read_only = key.sign({"scope": "orders:read"})
    response = await client.post("/orders", json={"sku": "A1"}, headers=bearer(read_only))
    assert_refused(response, 403, "insufficient_scope", "orders:write")
    assert 'scope="orders:write"' in response.headers["www-authenticate"]
    assert response.json()["missing_scopes"] == ["orders:write"]
    writer = key.sign({"scp": ["orders:write"], "sub": "bob"})
    created = await client.post("/orders", json={"sku": "A1"}, headers=bearer(writer))
    assert created.status_code == 201
    assert created.json() == {"sku": "A1", "by": "bob"}


async def test_a_jwt_cannot_grant_every_scope_with_a_star(
    client: httpx.AsyncClient, key: SigningKey
) -> None:
    """'*' means every scope only for the static token; in a JWT it grants nothing."""
    response = await client.post(
        "/orders", json={"sku": "A1"}, headers=bearer(key.sign({"scope": "*"}))
    )
    assert response.status_code == 403


async def test_public_and_optional_routes(client: httpx.AsyncClient, key: SigningKey) -> None:
    """Public routes ignore tokens; an optional principal is None without one, verified with."""
    assert (await client.get("/public")).status_code == 200
    assert (await client.get("/maybe")).json() == {"subject": None}
    assert (await client.get("/maybe", headers=bearer(key.sign()))).json() == {"subject": "alice"}
    bad = await client.get("/maybe", headers=bearer(key.sign({"aud": "other"})))
    assert bad.status_code == 401


async def test_rotation_unknown_kid_refreshes_the_key_set_once(
    jwks: JWKSServer, key: SigningKey
) -> None:
    """A new key id makes the service fetch the JWKS again; a retired key stops working."""
    now = [1000.0]
    svc = make_service(jwks.url, jwks_min_refresh_seconds=30)
    svc.authenticator.jwt.keys.clock = lambda: now[0]  # type: ignore[union-attr]
    async with serve(svc) as client:
        assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200
        assert jwks.hits == 1  # fetched at startup, cached since
        for _ in range(5):
            assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200
        assert jwks.hits == 1
        new = rsa_key("rsa-2")
        jwks.keys = [new.jwk]  # the provider rotated: rsa-1 retired
        now[0] += 30  # the minimum time between refreshes has passed
        assert (await client.get("/me", headers=bearer(new.sign()))).status_code == 200
        assert jwks.hits == 2


async def test_unknown_kid_refreshes_are_rate_limited(jwks: JWKSServer, key: SigningKey) -> None:
    """A flood of made-up key ids costs at most one fetch per jwks_min_refresh_seconds."""
    now = [1000.0]
    svc = make_service(jwks.url, jwks_min_refresh_seconds=30)
    svc.authenticator.jwt.keys.clock = lambda: now[0]  # type: ignore[union-attr]
    async with serve(svc) as client:
        assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200
        assert jwks.hits == 1

        async def flood(first: int) -> None:
            for n in range(first, first + 10):
                forged = SigningKey(f"made-up-{n}", "RS256", key.private)
                response = await client.get("/me", headers=bearer(forged.sign()))
                assert_refused(response, 401, "invalid_token", "not in the issuer's key set")

        await flood(0)  # within 30 s of the startup fetch: no fetch at all
        assert jwks.hits == 1
        now[0] += 31
        await flood(10)  # the first unknown kid fetches, the other nine wait their turn
        assert jwks.hits == 2
        now[0] += 29
        await flood(20)
        assert jwks.hits == 2
        now[0] += 2
        await flood(30)
        assert jwks.hits == 3


async def test_stale_keys_are_refetched_in_the_background(
    jwks: JWKSServer, key: SigningKey
) -> None:
    """After jwks_cache_seconds the set is fetched again without failing requests."""
    now = [1000.0]
    svc = make_service(jwks.url, jwks_cache_seconds=300)
    svc.authenticator.jwt.keys.clock = lambda: now[0]  # type: ignore[union-attr]
    async with serve(svc) as client:
        assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200
        now[0] += 301
        fresh = key.sign({"jti": "another"})  # not in the verified-token cache
        assert (await client.get("/me", headers=bearer(fresh))).status_code == 200
        deadline = time.monotonic() + 10
        # the fetch runs in a task against a server thread: nothing to await but the count
        while jwks.hits < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert jwks.hits == 2


async def test_identity_provider_down_is_503_then_recovers(
    jwks: JWKSServer, key: SigningKey
) -> None:
    """Keys never fetched (provider down at startup): 503 with Retry-After, 200 once it is up."""
    jwks.down = True
    async with serve(make_service(jwks.url, jwks_min_refresh_seconds=0)) as client:
        response = await client.get("/me", headers=bearer(key.sign()))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.headers["content-type"] == "application/problem+json"
        assert (await client.get("/public")).status_code == 200
        jwks.down = False
        assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200


async def test_symmetric_keys_in_the_key_set_are_ignored(key: SigningKey) -> None:
    """An 'oct' key published in the JWKS can never verify a token (anyone could sign)."""
    secret = b"s" * 32
    oct_jwk = {
        "kty": "oct",
        "kid": "shared",
        "k": base64.urlsafe_b64encode(secret).rstrip(b"=").decode(),
    }
    with jwks_server(key) as server:
        server.keys.append(oct_jwk)
        async with serve(make_service(server.url)) as client:
            now = int(time.time())
            claims = {"sub": "eve", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 60}
            token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "shared"})
            assert (await client.get("/me", headers=bearer(token))).status_code == 401
            assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200


async def test_es256_keys_work_too() -> None:
    """An EC issuer: ES256 tokens verify against its JWKS."""
    key = ec_key()
    with jwks_server(key) as server:
        async with serve(make_service(server.url)) as client:
            assert (await client.get("/me", headers=bearer(key.sign()))).status_code == 200


def test_jwks_without_audience_is_a_config_error() -> None:
    """NATIVEKIT_AUTH_JWKS_URL alone is refused: every token of the provider would pass."""
    with pytest.raises(nativekit.ConfigError, match="NATIVEKIT_AUTH_AUDIENCE"):
        nativekit.Service(
            "orders",
            settings=nativekit.Settings(_env_file=None, auth={"jwks_url": "http://idp/jwks"}),
        )


def test_symmetric_algorithms_cannot_be_configured() -> None:
    """NATIVEKIT_AUTH_ALGORITHMS refuses none and HS*, naming the variable."""
    for bad in (["none"], ["HS256"], ["RS256", "HS512"]):
        with pytest.raises(nativekit.ConfigError, match="NATIVEKIT_AUTH_ALGORITHMS"):
            nativekit.Settings(_env_file=None, auth={"algorithms": bad})


async def test_a_verified_token_is_remembered_but_never_past_its_expiry(key: SigningKey) -> None:
    """The same token again is taken from the cache; once its exp passed it is refused."""
    with jwks_server(key) as server:
        svc = make_service(server.url, leeway_seconds=0)
        async with serve(svc) as client:
            token = key.sign({"exp": int(time.time()) + 2})
            assert (await client.get("/me", headers=bearer(token))).status_code == 200
            verified = svc.authenticator.jwt._verified  # type: ignore[union-attr]
            assert token in verified
            assert verified[token][1] <= int(time.time()) + 2  # remembered until exp at most
            assert (await client.get("/me", headers=bearer(token))).status_code == 200
            await asyncio.sleep(max(0.0, verified[token][1] - time.time()) + 0.1)
            refused = await client.get("/me", headers=bearer(token))
            assert_refused(refused, 401, "invalid_token", "expired")
            assert token not in verified


async def test_the_cache_lifetime_bounds_a_withdrawn_key(key: SigningKey) -> None:
    """A cached token outlives its key's withdrawal only until token_cache_seconds ran out."""
    with jwks_server(key) as server:
        svc = make_service(server.url, token_cache_seconds=30, jwks_min_refresh_seconds=0)
        jwt_auth = svc.authenticator.jwt  # type: ignore[union-attr]
        now = [time.time()]
        jwt_auth.clock = lambda: now[0]
        async with serve(svc) as client:
            old = key.sign()
            assert (await client.get("/me", headers=bearer(old))).status_code == 200
            new = rsa_key("rsa-2")
            server.keys = [new.jwk]  # rsa-1 withdrawn
            assert (await client.get("/me", headers=bearer(new.sign()))).status_code == 200
            assert (await client.get("/me", headers=bearer(old))).status_code == 200  # cached
            now[0] += 31
            refused = await client.get("/me", headers=bearer(old))
            assert_refused(refused, 401, "invalid_token", "not in the issuer's key set")


async def test_without_the_cache_every_request_is_verified(key: SigningKey) -> None:
    """token_cache_seconds=0: a withdrawn key's tokens fail as soon as the set is refetched."""
    with jwks_server(key) as server:
        svc = make_service(server.url, token_cache_seconds=0, jwks_min_refresh_seconds=0)
        async with serve(svc) as client:
            old = key.sign()
            assert (await client.get("/me", headers=bearer(old))).status_code == 200
            new = rsa_key("rsa-2")
            server.keys = [new.jwk]
            assert (await client.get("/me", headers=bearer(new.sign()))).status_code == 200
            assert (await client.get("/me", headers=bearer(old))).status_code == 401
