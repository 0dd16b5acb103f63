"""nativekit reaches its dependencies (starlette, redis-py, OpenTelemetry, prometheus-client,
structlog, aiokafka, asyncpg) by public API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nativekit

#: the libraries whose private modules and attributes nativekit must not touch
LIBRARIES = frozenset(
    {"starlette", "redis", "opentelemetry", "prometheus_client", "structlog", "aiokafka", "asyncpg"}
)

#: private attributes of those libraries that speed-ups once reached (and their kin)
KNOWN_PRIVATE = frozenset(
    {
        # redis-py connection pools
        "_available_connections",
        "_in_use_connections",
        "_condition",
        "_waiters",
        "_in_maintenance",
        "_lock",
        "_event_dispatcher",
        # prometheus-client metrics
        "_value",
        "_sum",
        "_buckets",
        "_upper_bounds",
        "_count",
        "_metrics",
        # OpenTelemetry SDK
        "_active_span_processor",
        "_span_processors",
        # structlog's registry of bound context variables
        "_CONTEXT_VARS",
    }
)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _library(module: str) -> str | None:
    root = module.split(".")[0]
    return root if root in LIBRARIES else None


def _own_attributes(tree: ast.Module) -> set[str]:
    """Names the module itself defines: assigned attributes (``x.name = ...``), functions
    and methods, and ``__slots__`` entries."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            own.add(node.name)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            own.update(
                e.value
                for e in ast.walk(node.value)
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )
    return own


def violations_in(source: str, where: str) -> list[str]:
    """Each use of a private module or attribute of :data:`LIBRARIES` in ``source``."""
    tree = ast.parse(source)
    found: list[str] = []
    imported: dict[str, str] = {}  # local name -> the library it comes from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                lib = _library(alias.name)
                if lib is None:
                    continue
                imported[(alias.asname or alias.name).split(".")[0]] = lib
                if any(_is_private(part) for part in alias.name.split(".")):
                    found.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            lib = _library(node.module)
            if lib is None:
                continue
            if any(_is_private(part) for part in node.module.split(".")):
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
            for alias in node.names:
                imported[alias.asname or alias.name] = lib
                if _is_private(alias.name):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
    if not imported:
        return found
    own = _own_attributes(tree)
    subclasses = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(base, ast.Name | ast.Attribute)
            and ast.unparse(base).split(".")[0] in imported
            for base in node.bases
        )
    }
    for node in ast.walk(tree):
        names: list[tuple[str, int]] = []
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
            names.append((node.attr, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "hasattr", "setattr"}
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
            and node.args[1].value not in own
        ):
            names.append((node.args[1].value, node.lineno))
        for name, line in names:
            if name in KNOWN_PRIVATE:
                found.append(f"{where}:{line}: .{name} (a private attribute of a dependency)")
    for node in ast.walk(tree):  # inherited private state of a dependency's class
        if isinstance(node, ast.ClassDef) and node.name in subclasses:
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Attribute)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id == "self"
                    and _is_private(inner.attr)
                    and inner.attr not in own
                ):
                    found.append(
                        f"{where}:{inner.lineno}: self.{inner.attr} "
                        f"(inherited from a dependency by {node.name})"
                    )
    return sorted(set(found))


def violations(root: Path) -> list[str]:
    """Every use of a dependency's private module or attribute under ``root``."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        found += violations_in(path.read_text(), str(path.relative_to(root.parent)))
    return found


def test_nativekit_uses_no_private_part_of_its_dependencies() -> None:
    """No module of nativekit imports or reaches a private part of those libraries."""
    assert violations(Path(nativekit.__file__).parent) == []


@pytest.mark.parametrize(
    "source",
    [
        "from starlette._utils import get_route_path",
        "from opentelemetry.util._decorator import _agnosticcontextmanager",
        "import redis._parsers",
        "from prometheus_client import _private_thing",
        "from prometheus_client import Histogram\ndef f(h): return h._upper_bounds, h._sum",
        "from prometheus_client import Gauge\ndef f(g): return g._value.get()",
        "import redis.asyncio as r\nclass P(r.BlockingConnectionPool):\n"
        "    def f(self): return self._available_connections",
        "import redis.asyncio as r\nclass P(r.ConnectionPool):\n"
        "    def f(self): return self._condition._waiters",
        "import redis.asyncio as r\ndef f(p): return getattr(p, '_in_maintenance', False)",
    ],
)
def test_the_scan_finds_each_kind_of_use(source: str) -> None:
    """The scan reports private imports, known private attributes and inherited state."""
    assert violations_in(source, "sample.py")


def test_the_scan_allows_own_private_state() -> None:
    """A class's own private attributes, next to a dependency import, are not reported."""
    source = (
        "import redis.asyncio as r\n"
        "class P(r.ConnectionPool):\n"
        "    def __init__(self):\n"
        "        self._slots = 1\n"
        "    def _helper(self): return self._slots\n"
        "    def f(self): return self._helper()\n"
    )
    assert violations_in(source, "sample.py") == []
