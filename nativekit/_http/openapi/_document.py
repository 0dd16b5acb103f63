"""The OpenAPI 3.1 document of one service or of several served together."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from nativekit._http.openapi import _problems as problems
from nativekit._http.openapi._operations import Found, collect
from nativekit._http.openapi._schemas import SchemaSet
from nativekit.errors import ConfigError

OPENAPI_VERSION = "3.1.0"


def build_openapi(
    services: Sequence[tuple[str, Sequence[BaseRoute], str | None]],
    *,
    title: str,
    version: str,
) -> dict[str, Any]:
    """The document of ``services``: ``(name, routes, description)`` each, in order.

    When two services answer the same path and method, the first one is documented,
    as the first one serves it.
    """
    schemas = SchemaSet()
    found: list[Found] = []
    seen: set[tuple[str, str]] = set()
    for name, routes, _ in services:
        for op in collect(routes, name, schemas):
            if (op.path, op.method) not in seen:
                seen.add((op.path, op.method))
                found.append(op)
    _settle_ids(found)
    paths: dict[str, dict[str, Any]] = {}
    for op in found:
        paths.setdefault(op.path, {})[op.method] = op.operation
    paths = schemas.resolve(paths)
    clash = set(schemas.components) & set(problems.SCHEMAS)
    if clash:
        raise ConfigError(
            f"The models {sorted(clash)} share their name with nativekit's problem+json "
            "schemas in the OpenAPI document; rename them (e.g. 'OrderProblem')."
        )
    tags = [{"name": n, **({"description": d} if d else {})} for n, _, d in services]
    used = {t for op in found for t in op.operation.get("tags", ())}
    tags += [{"name": t} for t in sorted(used - {n for n, _, _ in services})]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "tags": tags,
        "paths": paths,
        "components": {
            "schemas": {**schemas.components, **problems.SCHEMAS},
            "responses": problems.responses(),
        },
    }


def _settle_ids(found: list[Found]) -> None:
    """Unique operation ids that do not depend on the order of routes or services.

    A name used once stays as it is; every operation sharing a name is qualified
    with its service, then, if still shared, with its method too.
    """
    explicit = Counter(op.name for op in found if op.explicit_id)
    twice = sorted(name for name, n in explicit.items() if n > 1)
    if twice:
        raise ConfigError(f"operation_id {twice} is given to more than one route.")
    names = Counter(op.name for op in found)
    for op in found:
        if names[op.name] > 1 and not op.explicit_id:
            op.name = f"{op.service}.{op.name}"
    names = Counter(op.name for op in found)
    for op in found:
        if names[op.name] > 1 and not op.explicit_id:
            op.name = f"{op.name}.{op.method}"
    taken = Counter(op.name for op in found)
    left = sorted(name for name, n in taken.items() if n > 1)
    if left:
        raise ConfigError(
            f"operation ids {left} are not unique; give one of the routes operation_id=."
        )
    for op in found:
        op.operation["operationId"] = op.name
