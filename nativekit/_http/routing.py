"""Typed route handlers: parameters converted by annotation, results rendered as JSON.

A handler's parameters are read by where they belong:

* a name in the path template (``/items/{item_id}``) is a path parameter;
* a pydantic model is the JSON body;
* ``Annotated[T, Header("X-Name")]`` is a request header;
* a ``starlette.requests.Request`` receives the request itself;
* a ``nativekit.auth.Principal`` receives the verified caller (the route then
  requires a bearer token; ``Principal | None`` makes it optional);
* anything else is a query parameter (``list[T]`` takes repeated values).

Every value is validated by pydantic; all failures are reported together as one
422 problem+json naming each field.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, Router
from starlette.types import Receive, Scope, Send

from nativekit._http.openapi._declare import OperationDocs
from nativekit._http.problems import RequestValidationError
from nativekit.auth._guard import PRINCIPAL_KEY, Access
from nativekit.auth._principal import Principal
from nativekit.errors import ConfigError, HTTPError

Handler = Callable[..., Awaitable[Any]]
Source = Literal["path", "query", "header", "body", "request", "principal"]

_PATH_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-zA-Z_]+)?}")
_JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class Header:
    """Marks a handler parameter as a request header: ``Annotated[str, Header("X-Id")]``."""

    name: str | None = None


@dataclass
class _Param:
    name: str
    source: Source
    adapter: TypeAdapter[Any] | None
    alias: str
    required: bool
    default: Any
    is_list: bool = False


def _is_model(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, BaseModel)


def _describe_param(
    name: str, param: inspect.Parameter, annotation: Any, path_names: set[str], where: str
) -> _Param:
    required = param.default is inspect.Parameter.empty
    default = None if required else param.default
    header: Header | None = None
    if get_origin(annotation) is typing.Annotated:
        base, *meta = get_args(annotation)
        header = next((m for m in meta if isinstance(m, Header)), None)
        if header is not None:
            annotation = base
    if annotation is Request:
        return _Param(name, "request", None, name, False, None)
    if annotation is Principal or (
        type(None) in get_args(annotation) and Principal in get_args(annotation)
    ):
        return _Param(name, "principal", None, name, annotation is Principal, None)
    if header is not None:
        alias = (header.name or name.replace("_", "-")).lower()
        return _Param(name, "header", TypeAdapter(annotation), alias, required, default)
    if name in path_names:
        return _Param(name, "path", TypeAdapter(annotation), name, True, None)
    if _is_model(annotation):
        return _Param(name, "body", None, name, required, default)
    if annotation is inspect.Parameter.empty:
        raise ConfigError(f"{where}: parameter {name!r} needs a type annotation.")
    is_list = any(
        get_origin(a) in (list, tuple, set, frozenset) for a in (annotation, *get_args(annotation))
    )
    return _Param(name, "query", TypeAdapter(annotation), name, required, default, is_list)


class TypedEndpoint:
    """Adapts a typed ``async def`` handler to a Starlette ``Request -> Response`` endpoint."""

    def __init__(self, func: Handler, path: str, *, status_code: int) -> None:
        if not inspect.iscoroutinefunction(func):
            raise ConfigError(f"Route handler {func.__qualname__} must be an 'async def' function.")
        where = f"route {path} ({func.__qualname__})"
        self.func = func
        self.status_code = status_code
        hints = typing.get_type_hints(func, include_extras=True)
        path_names = set(_PATH_PARAM.findall(path))
        signature = inspect.signature(func)
        self.params = [
            _describe_param(name, p, hints.get(name, p.annotation), path_names, where)
            for name, p in signature.parameters.items()
        ]
        missing = path_names - {p.name for p in self.params if p.source == "path"}
        if missing:
            raise ConfigError(
                f"{where}: path parameters {sorted(missing)} are not in the signature."
            )
        bodies = [p for p in self.params if p.source == "body"]
        if len(bodies) > 1:
            raise ConfigError(
                f"{where}: at most one pydantic model parameter (the body) is allowed."
            )
        self.body = bodies[0] if bodies else None
        self.body_model: type[BaseModel] | None = (
            _unwrap_model(hints.get(self.body.name)) if self.body else None
        )
        returns = hints.get("return", inspect.Parameter.empty)
        self.returns: TypeAdapter[Any] | None = None
        if returns not in (inspect.Parameter.empty, Any, None, type(None)) and not (
            inspect.isclass(returns) and issubclass(returns, Response)
        ):
            self.returns = TypeAdapter(returns)
        self._to_json: Callable[[Any], bytes] | None = None

    async def handle(self, request: Request) -> Response:
        """Convert the request into arguments, call the handler, render its result."""
        errors: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        for param in self.params:
            if param.source == "request":
                kwargs[param.name] = request
            elif param.source == "body":
                kwargs[param.name] = await self._read_body(request, param, errors)
            elif param.source == "principal":
                kwargs[param.name] = request.scope.get(PRINCIPAL_KEY)
            else:
                self._convert(request, param, kwargs, errors)
        if errors:
            raise RequestValidationError(errors)
        result = await self.func(**kwargs)
        return self._render(result)

    def _convert(
        self, request: Request, param: _Param, kwargs: dict[str, Any], errors: list[dict[str, Any]]
    ) -> None:
        raw: Any
        if param.source == "path":
            raw = request.path_params.get(param.alias)
        elif param.source == "header":
            raw = request.headers.get(param.alias)
        elif param.is_list:
            raw = request.query_params.getlist(param.alias) or None
        else:
            raw = request.query_params.get(param.alias)
        if raw is None:
            if param.required:
                errors.append(_error((param.source, param.alias), "Field required", "missing"))
            else:
                kwargs[param.name] = param.default
            return
        adapter = param.adapter
        if adapter is None:  # pragma: no cover - set for every non-body source
            raise RuntimeError(f"parameter {param.name} has no adapter")
        try:
            kwargs[param.name] = adapter.validate_python(raw, strict=False)
        except ValidationError as exc:
            errors.extend(_from_pydantic(exc, (param.source, param.alias)))

    async def _read_body(
        self, request: Request, param: _Param, errors: list[dict[str, Any]]
    ) -> Any:
        content_type = request.headers.get("content-type", "")
        media = content_type.split(";", 1)[0].strip().lower()
        if media and media not in _JSON_TYPES and not media.endswith("+json"):
            raise HTTPError(
                415,
                f"Expected a JSON body (Content-Type: application/json), got {media!r}.",
            )
        raw = await request.body()
        if not raw:
            if param.required:
                errors.append(_error(("body",), "A JSON body is required", "missing"))
            return param.default
        model = self.body_model
        if model is None:  # pragma: no cover - set whenever a body parameter exists
            raise RuntimeError("body parameter without a model")
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            problems = exc.errors(include_url=False, include_input=False)
            invalid = next((e for e in problems if e["type"] == "json_invalid"), None)
            if invalid is not None:
                detail = invalid.get("ctx", {}).get("error", invalid["msg"])
                raise HTTPError(
                    400, f"The request body is not valid JSON: {detail}.", title="Malformed JSON"
                ) from None
            errors.extend(_from_pydantic(exc, ("body",)))
            return None

    def _render(self, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        if result is None and self.status_code == 204:
            return Response(status_code=204)
        if self.returns is not None:
            to_json = self._to_json
            if to_json is None:
                # the serializer itself: TypeAdapter.dump_json only forwards its defaults to it
                to_json = self._to_json = self.returns.serializer.to_json
            body = to_json(result)
        elif isinstance(result, BaseModel):
            body = result.model_dump_json().encode()
        else:
            body = _ANY.dump_json(result)
        return Response(body, status_code=self.status_code, media_type="application/json")


_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def _unwrap_model(annotation: Any) -> type[BaseModel]:
    if get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    args = [a for a in get_args(annotation) if a is not type(None)]
    model = args[0] if args and not _is_model(annotation) else annotation
    return typing.cast(type[BaseModel], model)


def _error(loc: tuple[Any, ...], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": list(loc), "loc_str": ".".join(str(p) for p in loc), "msg": msg, "type": type_}


def _from_pydantic(exc: ValidationError, prefix: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [
        _error(prefix + tuple(e["loc"]), e["msg"], e["type"])
        for e in exc.errors(include_url=False, include_input=False)
    ]


def route_path(scope: Scope) -> str:
    """The path the routes match: ``scope["path"]`` without the ASGI ``root_path`` prefix.

    The rule Starlette's router applies (a mounted app sees the part after its
    mount point), written here because Starlette keeps its own copy private.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


class FastRoute(Route):
    """A Starlette ``Route`` that rejects paths without its literal prefix before the regex.

    The router tries routes in order (probes first); a ``startswith`` on the part
    of the template before the first ``{`` rules most of them out for a fraction
    of the cost of ``Route.matches``, and can never reject a path the regex would
    accept.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self._literal_prefix = path.split("{", 1)[0]
        #: True when the template has no parameters: it matches one path only.
        self.static = not self.param_convertors

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as ``Route`` does, skipping the regex when the literal prefix differs."""
        if scope["type"] == "http" and not route_path(scope).startswith(self._literal_prefix):
            return Match.NONE, {}
        return super().matches(scope)


class LeadingStaticDispatch:
    """Route as ``router`` does, without trying its leading static routes on other paths.

    A service's router starts with the probe routes (``/livez`` ...), tried in
    order before every user route. A static route matches only its own path (or
    the same path with a trailing newline), and the router's slash redirect only
    looks one slash away; so when the path, stripped of trailing slashes and
    newlines, is none of those paths, the same routes minus that prefix answer
    exactly as the whole router would. Anything else goes to the whole router.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self._count = -1
        self._static: frozenset[str] = frozenset()
        self._rest: Router | None = None

    def _index(self) -> None:
        routes = self.router.routes
        n = 0
        for route in routes:
            if not (isinstance(route, FastRoute) and route.static):
                break
            n += 1
        plain = self.router.middleware_stack == self.router.app  # no router-level middleware
        self._static = frozenset(r.path for r in routes[:n] if isinstance(r, FastRoute))
        self._rest = (
            Router(routes[n:], redirect_slashes=self.router.redirect_slashes)
            if n and plain
            else None
        )
        if self._rest is not None:
            self._rest.default = self.router.default
        self._count = len(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if len(self.router.routes) != self._count:  # routes added after the first request
            self._index()
        rest = self._rest
        if (
            rest is None
            or scope["type"] != "http"
            or scope.get("root_path")
            or scope["path"].rstrip("/\n") in self._static
        ):
            await self.router(scope, receive, send)
            return
        scope.setdefault("router", self.router)  # url_for sees every route
        await rest.app(scope, receive, send)


class TypedRoute(FastRoute):
    """A Starlette route whose endpoint is a :class:`TypedEndpoint`."""

    def __init__(
        self,
        path: str,
        func: Handler,
        *,
        methods: list[str],
        status_code: int,
        name: str | None,
        access: Access | None = None,
    ) -> None:
        self.typed = TypedEndpoint(func, path, status_code=status_code)
        principal = next((p for p in self.typed.params if p.source == "principal"), None)
        if principal is not None:
            access = access or Access()
            access = Access(
                access.scopes,
                True if principal.required and access.required is None else access.required,
                optional_principal=not principal.required,
                operator=access.operator,
            )
        #: What the route asks of its caller (None: as the service's settings say).
        self.access = access
        #: What the OpenAPI document says beyond the signature (set by the decorators).
        self.docs = OperationDocs()
        super().__init__(path, self.typed.handle, methods=methods, name=name or func.__name__)
        # Starlette wraps the endpoint in a second exception-handling layer with two
        # closures per request; the app's ExceptionMiddleware holds the same handlers
        # and renders the same response, so errors simply propagate to it.
        self.app = self._serve

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.typed.handle(Request(scope, receive, send))
        await response(scope, receive, send)
