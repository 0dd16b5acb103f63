"""Route decorators of a service: ``@svc.get("/path")`` and friends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, Unpack

from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from nativekit._http.openapi._declare import OperationDocs, RouteDocs
from nativekit._http.routing import Handler, TypedRoute
from nativekit.auth._guard import Access
from nativekit.errors import ConfigError

F = TypeVar("F", bound=Handler)


class Routes:
    """Typed route registration; the class using it stores the routes in ``_add``.

    The keyword options of every decorator (``summary``, ``tags``, ``responses``,
    ``deprecated``, ...) document the route in the OpenAPI document: see ``RouteDocs``.
    """

    def _add(self, route: BaseRoute) -> None:
        raise NotImplementedError

    def route(
        self,
        path: str,
        *,
        methods: list[str],
        status_code: int = 200,
        name: str | None = None,
        scopes: Sequence[str] = (),
        auth: bool | None = None,
        **docs: Unpack[RouteDocs],
    ) -> Callable[[F], F]:
        """Register a typed handler for ``path`` and ``methods``; returns it unchanged.

        ``scopes`` are the scopes a caller's bearer token must grant (a token is then
        required); ``auth=True`` requires a token, ``auth=False`` keeps the route public
        even with ``NATIVEKIT_AUTH_ROUTES=true``. See docs/auth.md.
        """
        if not path.startswith("/"):
            raise ConfigError(f"Route path {path!r} must start with '/'.")
        if isinstance(scopes, str):
            raise ConfigError(f"Route {path}: scopes must be a list, e.g. scopes=[{scopes!r}].")
        if scopes and auth is False:
            raise ConfigError(f"Route {path}: scopes= needs a token; it cannot be auth=False.")
        access = Access(tuple(scopes), auth) if scopes or auth is not None else None

        checked = OperationDocs.of(docs, f"route {path}")

        def decorator(func: F) -> F:
            route = TypedRoute(
                path, func, methods=methods, status_code=status_code, name=name, access=access
            )
            route.docs = checked
            self._add(route)
            return func

        return decorator

    def get(
        self,
        path: str,
        *,
        status_code: int = 200,
        name: str | None = None,
        scopes: Sequence[str] = (),
        auth: bool | None = None,
        **docs: Unpack[RouteDocs],
    ) -> Callable[[F], F]:
        """Register a GET handler (HEAD is answered too)."""
        return self.route(
            path,
            methods=["GET"],
            status_code=status_code,
            name=name,
            scopes=scopes,
            auth=auth,
            **docs,
        )

    def post(
        self,
        path: str,
        *,
        status_code: int = 200,
        name: str | None = None,
        scopes: Sequence[str] = (),
        auth: bool | None = None,
        **docs: Unpack[RouteDocs],
    ) -> Callable[[F], F]:
        """Register a POST handler."""
        return self.route(
            path,
            methods=["POST"],
            status_code=status_code,
            name=name,
            scopes=scopes,
            auth=auth,
            **docs,
        )

    def put(
        self,
        path: str,
        *,
        status_code: int = 200,
        name: str | None = None,
        scopes: Sequence[str] = (),
        auth: bool | None = None,
        **docs: Unpack[RouteDocs],
    ) -> Callable[[F], F]:
        """Register a PUT handler."""
        return self.route(
            path,
            methods=["PUT"],
            status_code=status_code,
            name=name,
            scopes=scopes,
            auth=auth,
            **docs,
        )

    def patch(
        self,
        path: str,
        *,
        status_code: int = 200,
        name: str | None = None,
        scopes: Sequence[str] = (),
        auth: bool | None = None,
        **docs: Unpack[RouteDocs],
    ) -> Callable[[F], F]:
        """Register a PATCH handler."""
        return self.route(
            path,
            methods=["PATCH"],
            status_code=status_code,
            name=name,
            scopes=scopes,
            auth=auth,
            **docs,
        )

    def delete(
        self,
        path: str,
        *,
        status_code: int = 200,
        name: str | None = None,
        scopes: Sequence[str] = (),
        auth: bool | None = None,
        **docs: Unpack[RouteDocs],
    ) -> Callable[[F], F]:
        """Register a DELETE handler."""
        return self.route(
            path,
            methods=["DELETE"],
            status_code=status_code,
            name=name,
            scopes=scopes,
            auth=auth,
            **docs,
        )

    def add_route(self, route: BaseRoute) -> None:
        """Add a plain Starlette route (``Route``, ``Mount``, ``WebSocketRoute``).

        It appears in the OpenAPI document only when its endpoint declares its
        operation (``nativekit.operation_schema``).
        """
        self._add(route)

    def mount(self, path: str, app: ASGIApp, *, name: str | None = None) -> None:
        """Mount an ASGI application (a sub-app, static files) under ``path``."""
        self._add(Mount(path, app=app, name=name))
