"""Authentication and CORS of a service, built from its settings when its app is built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from nativekit.auth._guard import Access, AuditedGuard, Authenticator, AuthGuard
from nativekit.auth._principal import InvalidToken, Principal
from nativekit.auth._static import StaticTokenAuthenticator
from nativekit.errors import ConfigError
from nativekit.settings import AuthSettings, CorsSettings

_HOW = (
    "set NATIVEKIT_AUTH_TOKEN_FILE (a file holding a static bearer token) or "
    "NATIVEKIT_AUTH_JWKS_URL with NATIVEKIT_AUTH_AUDIENCE (JWTs from an identity provider)"
)


class Chain:
    """The static token first (a constant-time compare), then JWTs."""

    def __init__(self, static: StaticTokenAuthenticator | None, jwt: Authenticator | None):
        self.static = static
        self.jwt = jwt

    async def authenticate(self, token: str) -> Principal:
        """The principal of ``token`` from the first authenticator that knows it."""
        if self.static is not None and (self.jwt is None or self.static.matches(token)):
            return await self.static.authenticate(token)
        if self.jwt is None:  # pragma: no cover - a Chain has at least one
            raise InvalidToken("the token is not valid")
        return await self.jwt.authenticate(token)

    async def start(self) -> None:
        """Fetch the JWT signing keys now, so the first request need not wait for them."""
        keys = getattr(self.jwt, "keys", None)
        if keys is not None:
            await keys.prefetch()

    async def stop(self) -> None:
        """Stop a key set fetch in progress."""
        keys = getattr(self.jwt, "keys", None)
        if keys is not None:
            await keys.aclose()


class _Anyone:
    """The insecure operator API's authenticator: every caller is 'anonymous'."""

    async def authenticate(self, token: str) -> Principal:
        return Principal("anonymous", method="none")


def build_authenticator(settings: AuthSettings) -> Chain | None:
    """The authenticator the settings describe, or None when none is configured."""
    if not settings.configured:
        return None
    static = None
    if settings.token is not None:
        static = StaticTokenAuthenticator(
            settings.token.get_secret_value(), subject=settings.token_subject
        )
    jwt = None
    if settings.jwks_url is not None:
        if not settings.audience:
            raise ConfigError(
                "NATIVEKIT_AUTH_JWKS_URL is set but NATIVEKIT_AUTH_AUDIENCE is not: without an "
                "audience, a token your identity provider issued for any other service would "
                "be accepted here. Set NATIVEKIT_AUTH_AUDIENCE to this service's API identifier."
            )
        from nativekit.auth._jwks import KeySet
        from nativekit.auth._jwt import JWTAuthenticator

        keys = KeySet(
            settings.jwks_url,
            cache_seconds=settings.jwks_cache_seconds,
            min_refresh_seconds=settings.jwks_min_refresh_seconds,
            timeout=settings.jwks_timeout_seconds,
        )
        jwt = JWTAuthenticator(
            keys,
            algorithms=settings.algorithms,
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=settings.leeway_seconds,
            scope_claim=settings.scope_claim,
            cache_seconds=settings.token_cache_seconds,
            cache_size=settings.token_cache_size,
        )
    return Chain(static, jwt)


def check_operator_api(settings: AuthSettings, log: Any) -> None:
    """Refuse to serve the operator API unprotected unless development mode says so."""
    if settings.configured:
        return
    if not settings.insecure_operator_api:
        raise ConfigError(
            "NATIVEKIT_SAGA_OPERATOR_API=true but no authentication is configured, so anyone "
            f"reaching the port could retry, compensate or abort sagas. To protect it, {_HOW}. "
            "For local development only, NATIVEKIT_AUTH_INSECURE_OPERATOR_API=true serves it "
            "without authentication."
        )
    log.warning(
        "auth.operator_api.insecure",
        hint="NATIVEKIT_AUTH_INSECURE_OPERATOR_API=true: the operator API has no "
        "authentication; never use this outside development",
    )


def secure_routes(
    routes: Sequence[BaseRoute],
    *,
    metrics: Sequence[BaseRoute],
    settings: AuthSettings,
    authenticator: Authenticator | None,
    realm: str,
    log: Any,
) -> None:
    """Put a guard on each route that needs one (in place: ``route.app`` is wrapped).

    ``routes`` are the service's own (typed, plain, operator); ``metrics`` the
    ``/metrics`` route, guarded when ``NATIVEKIT_AUTH_METRICS`` is on.
    """
    for route in routes:
        access: Access | None = getattr(route, "access", None)
        if access is not None and access.operator:
            who = authenticator or _Anyone()
            _wrap(
                route,
                AuditedGuard,
                log=log,
                authenticator=who,
                required=authenticator is not None,
                scopes=(settings.operator_scope,) if authenticator else (),
                realm=realm,
            )
            continue
        required, scopes = _needs(access, settings.routes)
        optional = access is not None and access.optional_principal
        if not required and (not optional or authenticator is None):
            continue  # an optional principal without authentication configured is None
        if authenticator is None:
            raise ConfigError(
                f"route {getattr(route, 'path', route)!r} requires a bearer token"
                f"{' with scopes ' + ', '.join(scopes) if scopes else ''} but no authentication "
                f"is configured; {_HOW}."
            )
        _wrap(
            route,
            AuthGuard,
            authenticator=authenticator,
            scopes=scopes,
            required=required,
            realm=realm,
        )
    if settings.metrics:
        if authenticator is None:
            raise ConfigError(
                f"NATIVEKIT_AUTH_METRICS=true but no authentication is configured; {_HOW}."
            )
        for route in metrics:
            _wrap(route, AuthGuard, authenticator=authenticator, realm=realm)


def _needs(access: Access | None, routes_default: bool) -> tuple[bool, tuple[str, ...]]:
    if access is None:
        return routes_default, ()
    if access.scopes:
        return True, access.scopes
    return (routes_default if access.required is None else access.required), ()


def _wrap(route: BaseRoute, guard: type[AuthGuard], **options: Any) -> None:
    if not isinstance(route, Route | Mount | WebSocketRoute):
        raise ConfigError(f"cannot protect {route!r}: only Route, Mount and WebSocketRoute")
    route.app = guard(route.app, **options)


def cors_middleware(settings: CorsSettings) -> list[Middleware]:
    """Starlette's CORS middleware as the settings describe (none without origins)."""
    if not settings.origins:
        return []
    from starlette.middleware.cors import CORSMiddleware

    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.origins,
            allow_methods=settings.methods,
            allow_headers=settings.headers,
            allow_credentials=settings.credentials,
            max_age=settings.max_age_seconds,
        )
    ]
