"""docs/auth.md's example, configured by the environment as the page shows, with real tokens."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from jwks_support import AUDIENCE, ISSUER, jwks_server, rsa_key

from nativekit.testing import serve


async def test_the_auth_page_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Public, principal and scoped routes behave as the page says, with a JWT and the token."""
    key = rsa_key()
    token_file = tmp_path / "orders-token"
    token_file.write_text("static-secret\n")
    with jwks_server(key) as jwks:
        for name, value in {
            "NATIVEKIT_AUTH_JWKS_URL": jwks.url,
            "NATIVEKIT_AUTH_ISSUER": ISSUER,
            "NATIVEKIT_AUTH_AUDIENCE": AUDIENCE,
            "NATIVEKIT_AUTH_TOKEN_FILE": str(token_file),
            "NATIVEKIT_TELEMETRY_TRACING_ENABLED": "false",
        }.items():
            monkeypatch.setenv(name, value)
        import docs.examples.auth as example

        example = importlib.reload(example)
        async with serve(example.svc) as client:
            assert (await client.get("/catalog")).json() == ["mug", "tee"]
            assert (await client.get("/me")).status_code == 401
            reader = {"Authorization": f"Bearer {key.sign({'scope': 'orders:read'})}"}
            assert (await client.get("/me", headers=reader)).json() == {
                "subject": "alice",
                "scopes": ["orders:read"],
            }
            order = {"sku": "mug"}
            assert (await client.post("/orders", json=order, headers=reader)).status_code == 403
            writer = {"Authorization": f"Bearer {key.sign({'scope': 'orders:write'})}"}
            created = await client.post("/orders", json=order, headers=writer)
            assert created.status_code == 201
            assert created.json() == {"sku": "mug", "quantity": 1, "placed_by": "alice"}
            static = {"Authorization": "Bearer static-secret"}
            by_token = await client.post("/orders", json=order, headers=static)
            assert by_token.json()["placed_by"] == "static-token"
