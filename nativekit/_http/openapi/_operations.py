"""Routes to OpenAPI operations: typed routes from their signature, plain ones when declared."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.routing import BaseRoute, Mount, Route

from nativekit._http.openapi import _problems as problems
from nativekit._http.openapi._declare import OPERATION_ATTRIBUTE, OperationDocs
from nativekit._http.openapi._schemas import SchemaSet, drop_null
from nativekit._http.routing import TypedEndpoint, TypedRoute, _Param
from nativekit.errors import ConfigError

_CONVERTOR = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*):[a-zA-Z_]+}")
#: Documented methods (HEAD, answered by every GET route, is left out).
_METHODS = ("get", "put", "post", "delete", "options", "patch", "trace")


@dataclass
class Found:
    """One operation of the document, before its id is settled."""

    path: str
    method: str
    operation: dict[str, Any]
    name: str
    service: str
    explicit_id: bool


def collect(routes: Sequence[BaseRoute], service: str, schemas: SchemaSet) -> Iterator[Found]:
    """The operations of ``routes`` (mounted routers included) in route order."""
    yield from _walk(routes, "", service, schemas)


def _walk(
    routes: Sequence[BaseRoute], prefix: str, service: str, schemas: SchemaSet
) -> Iterator[Found]:
    for route in routes:
        if isinstance(route, TypedRoute):
            yield from _typed(route, prefix, service, schemas)
        elif isinstance(route, Route):
            yield from _plain(route, prefix, service)
        elif isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path, service, schemas)


def _template(path: str) -> str:
    return _CONVERTOR.sub(r"{\1}", path)


def _methods(route: Route) -> list[str]:
    return [m.lower() for m in sorted(route.methods or ()) if m.lower() in _METHODS]


def _docstring(func: Callable[..., Any]) -> tuple[str | None, str | None]:
    doc = inspect.getdoc(func)
    if not doc:
        return None, None
    first, _, rest = doc.partition("\n\n")
    return " ".join(first.split()), rest.strip() or None


# -- typed routes --------------------------------------------------------------------------


def _typed(route: TypedRoute, prefix: str, service: str, schemas: SchemaSet) -> Iterator[Found]:
    docs = route.docs
    if not (docs.include_in_schema and route.include_in_schema):
        return
    for method in _methods(route):
        operation = _typed_operation(route.typed, docs, service, schemas)
        yield Found(
            _template(prefix + route.path),
            method,
            operation,
            docs.operation_id or route.name,
            service,
            docs.operation_id is not None,
        )


def _typed_operation(
    endpoint: TypedEndpoint, docs: OperationDocs, service: str, schemas: SchemaSet
) -> dict[str, Any]:
    summary, description = _docstring(endpoint.func)
    operation: dict[str, Any] = {"tags": list(docs.tags or (service,))}
    if docs.summary or summary:
        operation["summary"] = docs.summary or summary
    if docs.description or description:
        operation["description"] = docs.description or description
    parameters = [_parameter(p, schemas) for p in endpoint.params if p.adapter is not None]
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None and endpoint.body_model is not None:
        operation["requestBody"] = {
            "required": endpoint.body.required,
            "content": {"application/json": {"schema": schemas.add(_adapter(endpoint.body_model))}},
        }
    operation["responses"] = _responses(endpoint, docs, bool(parameters), schemas)
    if docs.deprecated:
        operation["deprecated"] = True
    return operation


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    """One adapter per type, so a model used by many routes is collected once."""
    try:
        adapter = _ADAPTERS.get(annotation)
    except TypeError:  # unhashable metadata in Annotated[...]
        return TypeAdapter(annotation)
    if adapter is None:
        adapter = _ADAPTERS[annotation] = TypeAdapter(annotation)
    return adapter


def _parameter(param: _Param, schemas: SchemaSet) -> dict[str, Any]:
    def tweak(schema: dict[str, Any]) -> dict[str, Any]:
        if not param.required:
            schema = drop_null(schema)
            if param.default is not None:
                # a default with no JSON form is left out
                with contextlib.suppress(Exception):
                    schema["default"] = _ANY.dump_python(param.default, mode="json")
        if param.source == "path" and schema.get("type") == "string":
            schema.setdefault("minLength", 1)  # an empty segment never reaches the route
        return schema

    if param.adapter is None:  # pragma: no cover - only called for parameters with one
        raise RuntimeError(f"parameter {param.name} has no adapter")
    return {
        "name": param.alias,
        "in": param.source,
        "required": param.required,
        "schema": schemas.add(param.adapter, "validation", tweak),
    }


def _responses(
    endpoint: TypedEndpoint, docs: OperationDocs, has_params: bool, schemas: SchemaSet
) -> dict[str, Any]:
    status = endpoint.status_code
    success: dict[str, Any] = {"description": HTTPStatus(status).phrase}
    body = docs.response_model
    adapter = _adapter(body) if body is not None else endpoint.returns
    if adapter is not None and status != 204:
        success["content"] = {"application/json": {"schema": schemas.add(adapter, "serialization")}}
    responses: dict[str, Any] = {str(status): success}
    for code, doc in sorted(docs.responses.items()):
        responses[str(code)] = _declared(code, doc, schemas)
    shared = [500]
    if has_params or endpoint.body is not None:
        shared.append(422)
    if endpoint.body is not None:
        shared += [400, 413, 415]
    if any(p.source == "path" for p in endpoint.params):
        shared.append(404)
    for code in sorted(shared):
        responses.setdefault(str(code), problems.ref(code))
    return dict(sorted(responses.items()))


def _declared(code: int, doc: str | type[BaseModel], schemas: SchemaSet) -> dict[str, Any]:
    if isinstance(doc, str):
        if code >= 400:
            return {"description": doc, "content": problems.problem_content()}
        return {"description": doc}
    description = (inspect.getdoc(doc) or HTTPStatus(code).phrase).split("\n\n")[0]
    return {
        "description": " ".join(description.split()),
        "content": {"application/json": {"schema": schemas.add(_adapter(doc), "serialization")}},
    }


# -- plain Starlette routes -------------------------------------------------------------------


def _plain(route: Route, prefix: str, service: str) -> Iterator[Found]:
    if not route.include_in_schema:
        return
    for method in _methods(route):
        endpoint: Callable[..., Any] | None = route.endpoint
        if inspect.isclass(endpoint):  # an HTTPEndpoint: one method per verb
            endpoint = getattr(endpoint, method, None)
        declared = _declared_operation(endpoint, method) if endpoint is not None else None
        if declared is None:
            continue
        operation = {"tags": [service], **declared}
        yield Found(
            _template(prefix + route.path),
            method,
            operation,
            str(declared.get("operationId") or route.name),
            service,
            "operationId" in declared,
        )


def _declared_operation(endpoint: Callable[..., Any], method: str) -> dict[str, Any] | None:
    declared = getattr(endpoint, OPERATION_ATTRIBUTE, None)
    if declared is None:
        declared = _yaml_docstring(endpoint)
    if declared is None:
        return None
    if method in declared and isinstance(declared[method], dict):
        declared = declared[method]
    elif any(m in declared for m in _METHODS):
        return None  # declared per method, not for this one
    return dict(declared)


def _yaml_docstring(endpoint: Callable[..., Any]) -> dict[str, Any] | None:
    doc = inspect.getdoc(endpoint) or ""
    if "\n---" not in doc and not doc.startswith("---"):
        return None
    try:
        import yaml
    except ImportError as exc:
        raise ConfigError(
            f"The endpoint {getattr(endpoint, '__qualname__', endpoint)!r} declares its "
            "OpenAPI operation as YAML in its docstring; install PyYAML to read it, or use "
            "nativekit.operation_schema()."
        ) from exc
    loaded = yaml.safe_load(doc.split("---", 1)[1])
    return loaded if isinstance(loaded, dict) else None
