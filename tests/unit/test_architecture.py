"""The architecture rules of docs/design.md, checked on the source of nativekit/."""

from __future__ import annotations

import ast
from pathlib import Path

import nativekit

ROOT = Path(nativekit.__file__).parent
#: Public modules: everything else is private (``_name`` or inside a ``_package``).
PUBLIC = {
    "nativekit",
    "nativekit.__main__",
    "nativekit.auth",
    "nativekit.backends",
    "nativekit.backends.kafka",
    "nativekit.backends.postgres",
    "nativekit.backends.redis",
    "nativekit.cache",
    "nativekit.cli",
    "nativekit.client",
    "nativekit.errors",
    "nativekit.messaging",
    "nativekit.saga",
    "nativekit.settings",
    "nativekit.testing",
    "nativekit.testing.databases",
    "nativekit.testing.servers",
}
DRIVERS = ("redis", "aiokafka", "asyncpg", "psycopg")


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every nativekit module ``name`` imports (top level, in functions, for typing)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle (as a path of module names), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    """No module of nativekit imports itself through others (typing imports included)."""
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


CAPABILITIES = (
    "nativekit.saga",
    "nativekit.messaging",
    "nativekit.cache",
    "nativekit._http",
    "nativekit._telemetry",
    "nativekit.backends",
)


def test_capabilities_do_not_import_the_service() -> None:
    """Capabilities and backends get a context, never the Service (only the layers above
    it, the package root, combine(), the CLI and the test seam, import it)."""
    importers = {name for name, deps in GRAPH.items() if "nativekit._service" in deps}
    assert not {name for name in importers if name.startswith(CAPABILITIES)}, importers


def test_capabilities_do_not_import_backends() -> None:
    """Capabilities see protocols only: backends are chosen by the composition root."""
    offenders = {
        name: sorted(d for d in deps if d.startswith("nativekit.backends"))
        for name, deps in GRAPH.items()
        if name.startswith(CAPABILITIES[:-1])
    }
    assert {n: d for n, d in offenders.items() if d} == {}


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """The nodes of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    return [n for n in ast.walk(tree) if id(n) not in typing_only]


def test_only_backends_import_the_drivers() -> None:
    """redis and aiokafka are loaded under nativekit/backends/ and nowhere else (a type
    annotation may name a driver's class; the test seam, which starts and cleans up
    servers for test suites, talks to them directly)."""
    offenders = []
    for name, path in MODULES.items():
        if name.startswith(("nativekit.backends.", "nativekit.testing")):
            continue
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in DRIVERS]
    assert offenders == []


def test_implementation_modules_are_private() -> None:
    """A module is public only when listed; every other one is _private or in a _package."""
    public_by_accident = [
        name
        for name in MODULES
        if name not in PUBLIC
        and not any(part.startswith("_") for part in name.split(".")[1:])
    ]
    assert public_by_accident == []


def test_no_module_is_over_400_lines() -> None:
    """Modules stay small: split before 400 lines."""
    long = {n: c for n, p in MODULES.items() if (c := len(p.read_text().splitlines())) > 400}
    assert long == {}
