"""Render the project templates of ``nativekit new`` and write them to a directory.

Templates are package data (``nativekit/cli/templates/*.tmpl``) rendered with
:class:`string.Template` using ``{{name}}`` placeholders, so the ``$`` of
Makefiles, Dockerfiles and shells stays literal.
"""

from __future__ import annotations

import keyword
import string
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nativekit
from nativekit.service import SERVICE_NAME

# Import names a project package must not take: they would shadow what the project runs on.
_RESERVED = frozenset(
    {
        "nativekit", "tests", "test", "starlette", "uvicorn", "pydantic", "pydantic_settings",
        "redis", "aiokafka", "structlog", "prometheus_client", "opentelemetry", "httpx",
        "pytest", "pytest_asyncio", "ruff",
    }
)  # fmt: skip

# Output path (``{package}`` is replaced) -> template file name.
FILES: dict[str, str] = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "README.md": "README.md.tmpl",
    "Makefile": "Makefile.tmpl",
    "Dockerfile": "Dockerfile.tmpl",
    ".dockerignore": "dockerignore.tmpl",
    ".gitignore": "gitignore.tmpl",
    ".env.example": "env.example.tmpl",
    "src/{package}/__init__.py": "package_init.py.tmpl",
    "src/{package}/app.py": "app.py.tmpl",
    "tests/test_app.py": "test_app.py.tmpl",
}


class ScaffoldError(Exception):
    """A request ``nativekit new`` cannot carry out; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# {{name}} is a placeholder; any other "{{" is an error, so a typo cannot pass unnoticed.
_PLACEHOLDER = r"""
\{\{(?:
    (?P<named>[a-z_][a-z0-9_]*)\}\}
  | (?P<escaped>(?!))
  | (?P<braced>(?!))
  | (?P<invalid>)
)
"""


class _Template(string.Template):
    """``string.Template`` with ``{{name}}`` placeholders and no ``$`` syntax."""

    # Template compiles a str pattern itself; typeshed only knows the compiled form.
    pattern = _PLACEHOLDER  # type: ignore[assignment]


@dataclass(frozen=True)
class Project:
    """What the templates are filled with."""

    name: str
    package: str

    @property
    def values(self) -> dict[str, str]:
        """Placeholder values for the templates."""
        return {
            "name": self.name,
            "package": self.package,
            "title": self.name.replace("-", " ").replace("_", " ").replace(".", " ").title(),
            "nativekit_version": nativekit.__version__,
        }


def project_for(name: str) -> Project:
    """Check ``name`` and derive its Python package name.

    Raises:
        ScaffoldError: (exit code 2) when the name is not a valid service name or its
            package name cannot be imported without clashing.
    """
    if not SERVICE_NAME.match(name):
        raise ScaffoldError(
            f"{name!r} is not a valid service name; use 1-64 lowercase letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit (e.g. 'billing' "
            "or 'order-service').",
            2,
        )
    package = name.replace("-", "_").replace(".", "_")
    if not package.isidentifier() or keyword.iskeyword(package):
        raise ScaffoldError(
            f"{name!r} gives the package name {package!r}, which Python cannot import; "
            "start the name with a letter and avoid Python keywords.",
            2,
        )
    if package in _RESERVED or package in sys.stdlib_module_names:
        raise ScaffoldError(
            f"{name!r} gives the package name {package!r}, which would shadow the module "
            f"{package!r} the project needs; choose another name (e.g. '{name}-service').",
            2,
        )
    return Project(name=name, package=package)


def render(project: Project) -> dict[str, str]:
    """Every file of the project: relative path -> content."""
    templates = resources.files("nativekit.cli").joinpath("templates")
    values = project.values
    return {
        path.format(package=project.package): _Template(
            templates.joinpath(template).read_text(encoding="utf-8")
        ).substitute(values)
        for path, template in FILES.items()
    }


def check_target(target: Path, *, force: bool) -> None:
    """Refuse a target that is a file, or a non-empty directory unless ``force``.

    Raises:
        ScaffoldError: (exit code 1) when the target cannot be used.
    """
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a directory.", 1)
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ScaffoldError(
            f"{target} already exists and is not empty; choose another --directory, "
            "or pass --force to write the project files into it (files of the same "
            "name are overwritten, others are left alone).",
            1,
        )


def write(target: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` under ``target`` (creating directories); returns the written paths."""
    written = []
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def scaffold(name: str, target: Path, *, force: bool = False) -> list[Path]:
    """Create the project ``name`` in ``target``; returns the files written.

    Raises:
        ScaffoldError: for an invalid name (exit code 2) or an unusable target (1).
    """
    project = project_for(name)
    check_target(target, force=force)
    files = render(project)
    try:
        return write(target, files)
    except OSError as exc:
        raise ScaffoldError(f"cannot write the project to {target}: {exc}", 1) from exc
