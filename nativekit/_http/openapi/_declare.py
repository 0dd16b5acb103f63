"""What a route says about itself for the OpenAPI document, beyond its signature."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

from pydantic import BaseModel

from nativekit.errors import ConfigError

E = TypeVar("E", bound=Callable[..., Any])
#: Where a plain Starlette endpoint keeps the operation it declared.
OPERATION_ATTRIBUTE = "__nativekit_openapi__"


class RouteDocs(TypedDict, total=False):
    """Documentation options of ``@svc.get(...)`` and the other route decorators.

    Attributes:
        summary: the operation's summary; default the first line of the docstring.
        description: default the rest of the docstring.
        tags: groups in the docs page; default the service name.
        deprecated: mark the operation deprecated.
        operation_id: default the handler's name (qualified by the service and method
            where two operations would share it).
        responses: further statuses the handler answers, each with a description (a
            problem+json body for 4xx/5xx) or the pydantic model of its JSON body.
        response_model: the success body's model when the handler returns a
            ``Response`` itself (its annotation says nothing then).
        include_in_schema: False leaves the route out of the document.
    """

    summary: str
    description: str
    tags: Sequence[str]
    deprecated: bool
    operation_id: str
    responses: Mapping[int, str | type[BaseModel]]
    response_model: Any
    include_in_schema: bool


@dataclass(frozen=True)
class OperationDocs:
    """The checked :class:`RouteDocs` of one route."""

    summary: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    deprecated: bool = False
    operation_id: str | None = None
    responses: Mapping[int, str | type[BaseModel]] = field(default_factory=dict)
    response_model: Any = None
    include_in_schema: bool = True

    @classmethod
    def of(cls, options: RouteDocs, where: str) -> OperationDocs:
        """Check ``options`` (given to the route decorator of ``where``)."""
        unknown = set(options) - set(RouteDocs.__annotations__)
        if unknown:
            raise ConfigError(
                f"{where}: unknown route option(s) {sorted(unknown)}; "
                f"expected some of {sorted(RouteDocs.__annotations__)}."
            )
        responses = dict(options.get("responses", {}))
        for status, doc in responses.items():
            if not (isinstance(status, int) and 100 <= status <= 599):
                raise ConfigError(f"{where}: responses key {status!r} is not an HTTP status.")
            if not (isinstance(doc, str) or (inspect.isclass(doc) and issubclass(doc, BaseModel))):
                raise ConfigError(
                    f"{where}: responses[{status}] must be a description or a pydantic model, "
                    f"got {doc!r}."
                )
        tags = options.get("tags")
        if isinstance(tags, str):
            raise ConfigError(f"{where}: tags must be a list of names, got the string {tags!r}.")
        return cls(
            summary=options.get("summary"),
            description=options.get("description"),
            tags=tuple(tags) if tags is not None else None,
            deprecated=options.get("deprecated", False),
            operation_id=options.get("operation_id"),
            responses=responses,
            response_model=options.get("response_model"),
            include_in_schema=options.get("include_in_schema", True),
        )


def operation_schema(operation: Mapping[str, Any]) -> Callable[[E], E]:
    """Decorator: the OpenAPI operation object of a plain Starlette endpoint.

    Typed routes (``@svc.get``) are described from their signature; a route added
    with ``svc.add_route(Route(...))`` is listed in the OpenAPI document only when
    its endpoint declares its operation this way (or in its docstring, after a
    ``---`` line, as YAML, the convention of Starlette's schema generator)::

        @nativekit.operation_schema({"summary": "Ping", "responses": {"200": {...}}})
        async def ping(request: Request) -> Response: ...
    """
    if "responses" not in operation:
        raise ConfigError("operation_schema() needs at least 'responses' (OpenAPI requires it).")
    frozen = dict(operation)

    def decorator(endpoint: E) -> E:
        setattr(endpoint, OPERATION_ATTRIBUTE, frozen)
        return endpoint

    return decorator
