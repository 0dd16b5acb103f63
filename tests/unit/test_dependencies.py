"""Every third-party package nativekit imports is declared in pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string."""
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group()).lower()


def _imports() -> tuple[set[str], set[str]]:
    """Third-party top-level modules nativekit imports at module level, and inside functions
    (imports under ``if TYPE_CHECKING:`` are for mypy only and not counted)."""
    eager: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                root = name.split(".")[0]
                if root != "nativekit" and root not in sys.stdlib_module_names:
                    (lazy if in_function else eager).add(root)
            function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, in_function or function)

    for path in (ROOT / "nativekit").rglob("*.py"):
        visit(ast.parse(path.read_text(), str(path)), False)
    return eager, lazy


def test_every_imported_package_is_declared() -> None:
    """Module-level imports are base dependencies; imports inside functions are in an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for group in project["optional-dependencies"].values() for r in group}
    eager, lazy = _imports()
    installed = importlib.metadata.packages_distributions()

    def _distributions(module: str) -> set[str]:
        return {_name(d) for d in installed.get(module, [])}

    assert "click" in eager  # the console script every install gets imports it
    undeclared = sorted(m for m in eager if not _distributions(m) & base)
    assert undeclared == [], (
        f"imported at module level but not in [project].dependencies: {undeclared}"
    )
    missing = sorted(m for m in lazy - eager if not _distributions(m) & (base | extras))
    assert missing == [], f"imported lazily but declared nowhere: {missing}"
