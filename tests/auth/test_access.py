"""The static token, the operator API's protection and audit, /metrics, route defaults, CORS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import nativekit
from nativekit.auth import Principal
from nativekit.saga import SagaContext
from nativekit.testing import capture_logs, serve

TOKEN = "s3cret-operator-token"


class Order(BaseModel):
    """Saga input."""

    order_id: str


def make_service(*, whoami: bool = True, **settings: Any) -> nativekit.Service:
    """A service with one saga (so the operator API has something to serve) and user routes."""
    svc = nativekit.Service(
        "orders",
        settings=nativekit.Settings(
            _env_file=None, telemetry={"tracing_enabled": False}, **settings
        ),
    )
    saga = svc.saga("ship", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    @svc.get("/items")
    async def items() -> list[str]:
        return ["a"]

    @svc.get("/health-page", auth=False)
    async def page() -> str:
        return "ok"

    if whoami:

        @svc.get("/whoami")
        async def whoami(principal: Principal) -> dict[str, Any]:
            return {"subject": principal.subject, "method": principal.method}

    async def plain(request: Any) -> PlainTextResponse:
        return PlainTextResponse("plain")

    svc.add_route(Route("/plain", plain))
    return svc


def bearer(token: str = TOKEN) -> dict[str, str]:
    """The Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def test_operator_api_without_auth_refuses_to_start() -> None:
    """NATIVEKIT_SAGA_OPERATOR_API alone fails at startup, naming the settings to set."""
    svc = make_service(saga={"operator_api": True})
    with pytest.raises(nativekit.ConfigError) as caught:
        _ = svc.app
    message = str(caught.value)
    assert "NATIVEKIT_AUTH_TOKEN_FILE" in message
    assert "NATIVEKIT_AUTH_JWKS_URL" in message
    assert "NATIVEKIT_AUTH_INSECURE_OPERATOR_API=true" in message


async def test_operator_api_without_auth_fails_the_lifespan() -> None:
    """Served by uvicorn's lifespan, the service reports the failed startup."""
    from nativekit.testing import LifespanError, lifespan

    svc = make_service(saga={"operator_api": True})
    with pytest.raises((LifespanError, nativekit.ConfigError), match="NATIVEKIT_AUTH"):
        async with lifespan(svc):
            pass


async def test_insecure_operator_api_is_served_and_audited_as_anonymous() -> None:
    """The development switch serves it without a token, logging a warning and the actions."""
    svc = make_service(
        whoami=False, saga={"operator_api": True}, auth={"insecure_operator_api": True}
    )
    with capture_logs() as logs:
        async with serve(svc) as client:
            assert (await client.get("/_nativekit/sagas")).status_code == 200
            response = await client.post("/_nativekit/sagas/s1/abort", json={"reason": "test"})
            assert response.status_code == 404
    assert any(e["event"] == "auth.operator_api.insecure" for e in logs)
    actions = [e for e in logs if e["event"] == "operator.action"]
    assert actions and actions[-1]["principal"] == "anonymous"
    assert actions[-1]["status"] == response.status_code


async def test_operator_api_needs_the_token_and_audits_the_principal(tmp_path: Path) -> None:
    """With a static token file: 401 without it, 200 with it, one audit line per action."""
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    svc = make_service(
        saga={"operator_api": True}, auth={"token_file": secret, "token_subject": "ops-cli"}
    )
    with capture_logs() as logs:
        async with serve(svc) as client:
            refused = await client.get("/_nativekit/sagas")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == 'Bearer realm="orders"'
            wrong = await client.get("/_nativekit/sagas", headers=bearer("guess"))
            assert wrong.status_code == 401
            assert (await client.get("/_nativekit/sagas", headers=bearer())).status_code == 200
            missing = await client.post("/_nativekit/sagas/nope/retry", headers=bearer())
            assert missing.status_code == 404
    actions = [e for e in logs if e["event"] == "operator.action"]
    assert [(a["principal"], a["auth"], a["method"], a["status"]) for a in actions] == [
        ("ops-cli", "token", "POST", 404)
    ]
    assert actions[0]["path"] == "/_nativekit/sagas/nope/retry"
    denied = [e for e in logs if e["event"] == "operator.denied"]
    assert [d["status"] for d in denied] == [401, 401]
    assert all(TOKEN not in str(e) for e in logs)  # the token itself never reaches a log


async def test_user_routes_are_public_by_default_even_with_auth_configured() -> None:
    """Configuring a token protects the operator API, not the user's routes."""
    svc = make_service(auth={"token": TOKEN})
    async with serve(svc) as client:
        assert (await client.get("/items")).status_code == 200
        assert (await client.get("/plain")).status_code == 200
        assert (await client.get("/whoami")).status_code == 401  # it asks for a Principal
        me = await client.get("/whoami", headers=bearer())
        assert me.json() == {"subject": "static-token", "method": "token"}


async def test_auth_routes_protects_every_route_but_opted_out_ones() -> None:
    """NATIVEKIT_AUTH_ROUTES=true: typed and plain routes need a token; auth=False does not."""
    svc = make_service(auth={"token": TOKEN, "routes": True})
    async with serve(svc) as client:
        for path in ("/items", "/plain", "/whoami"):
            assert (await client.get(path)).status_code == 401, path
            assert (await client.get(path, headers=bearer())).status_code == 200, path
        assert (await client.get("/health-page")).status_code == 200
        assert (await client.get("/livez")).status_code == 200  # probes stay open


async def test_metrics_protection_is_optional() -> None:
    """/metrics is open by default and needs the token with NATIVEKIT_AUTH_METRICS=true."""
    async with serve(make_service(auth={"token": TOKEN})) as client:
        assert (await client.get("/metrics")).status_code == 200
    async with serve(make_service(auth={"token": TOKEN, "metrics": True})) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=bearer())).status_code == 200


@pytest.mark.parametrize("auth", [{"routes": True}, {"metrics": True}], ids=["routes", "metrics"])
def test_asking_for_protection_without_a_way_to_authenticate_is_a_config_error(
    auth: dict[str, Any],
) -> None:
    """Protecting routes or metrics with no token nor JWKS fails, saying what to set."""
    with pytest.raises(nativekit.ConfigError, match="NATIVEKIT_AUTH_TOKEN_FILE"):
        _ = make_service(auth=auth).app


def test_a_route_with_scopes_needs_a_configured_authenticator() -> None:
    """scopes= on a route of a service without auth is a config error naming the route."""
    svc = nativekit.Service("orders", settings=nativekit.Settings(_env_file=None))

    @svc.post("/orders", scopes=["orders:write"])
    async def create() -> None:
        return None

    with pytest.raises(nativekit.ConfigError, match="'/orders' requires a bearer token"):
        _ = svc.app


def test_route_options_are_checked() -> None:
    """A string instead of a list, or scopes with auth=False, are refused at decoration."""
    svc = nativekit.Service("orders", settings=nativekit.Settings(_env_file=None))
    with pytest.raises(nativekit.ConfigError, match="must be a list"):
        svc.get("/a", scopes="orders:read")  # type: ignore[arg-type]
    with pytest.raises(nativekit.ConfigError, match="cannot be auth=False"):
        svc.get("/a", scopes=["orders:read"], auth=False)


def test_empty_token_file_is_a_config_error(tmp_path: Path) -> None:
    """An empty secret would accept 'Bearer ' requests; it is refused with the variable named."""
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(nativekit.ConfigError, match="NATIVEKIT_AUTH"):
        nativekit.Settings(_env_file=None, auth={"token_file": empty})


async def test_cors_answers_preflights_and_adds_headers_to_refusals() -> None:
    """Listed origins get CORS headers, on 401 problems too; preflights need no token."""
    svc = make_service(
        auth={"token": TOKEN, "routes": True},
        cors={"origins": ["https://console.example.test"], "credentials": True},
    )
    origin = {"Origin": "https://console.example.test"}
    async with serve(svc) as client:
        preflight = await client.options(
            "/items",
            headers={
                **origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin["Origin"]
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        refused = await client.get("/items", headers=origin)
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin["Origin"]
        assert refused.headers["access-control-allow-credentials"] == "true"
        other = await client.get("/items", headers={"Origin": "https://evil.test", **bearer()})
        assert "access-control-allow-origin" not in other.headers


def test_cors_credentials_with_any_origin_is_refused() -> None:
    """credentials with '*' is a config error (browsers refuse it anyway)."""
    with pytest.raises(nativekit.ConfigError, match="NATIVEKIT_CORS"):
        nativekit.Settings(_env_file=None, cors={"origins": "*", "credentials": True})


async def test_combined_services_protect_their_shared_metrics() -> None:
    """combine(): the group's /metrics follows NATIVEKIT_AUTH_METRICS of the first service."""
    settings = nativekit.Settings(_env_file=None, auth={"token": TOKEN, "metrics": True})
    group = nativekit.combine(
        nativekit.Service("orders", settings=settings),
        nativekit.Service("payments", settings=settings),
    )
    async with serve(group) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers=bearer())).status_code == 200
        assert (await client.get("/livez")).status_code == 200


async def test_an_optional_principal_is_none_when_no_authentication_is_configured() -> None:
    """``Principal | None`` on a service without auth: the handler runs and gets None."""
    svc = nativekit.Service("orders", settings=nativekit.Settings(_env_file=None))

    @svc.get("/hello")
    async def hello(caller: Principal | None) -> dict[str, Any]:
        return {"caller": caller.subject if caller else None}

    async with serve(svc) as client:
        response = await client.get("/hello", headers=bearer("anything"))
    assert response.json() == {"caller": None}
