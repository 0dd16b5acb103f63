"""Create a service project from the packaged project template (``nativekit new``).

The template is a copier template shipped as package data, one directory per
released version (``nativekit/cli/templates/1``, ``2``, ...); ``new`` renders
the newest. Released versions stay untouched so that ``nativekit update`` can
render the version a project was made from (see :mod:`nativekit.cli._template_repo`).
"""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nativekit._service import SERVICE_NAME
from nativekit.cli._common import EXIT_FAILED, EXIT_USAGE

TEMPLATES = Path(__file__).resolve().parent / "templates"
ANSWERS_FILE = ".copier-answers.yml"
INSTALL_HINT = "pip install 'nativekit[cli]'"

# Import names a project package must not take: they would shadow what the project runs on.
_RESERVED = frozenset(
    {
        "nativekit", "tests", "test", "starlette", "uvicorn", "pydantic", "pydantic_settings",
        "redis", "aiokafka", "structlog", "prometheus_client", "opentelemetry", "httpx",
        "pytest", "pytest_asyncio", "ruff", "copier",
    }
)  # fmt: skip

# RFC 1123 label: the name becomes Kubernetes object names, a DNS host and a topic prefix.
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ScaffoldError(Exception):
    """A request ``nativekit new`` or ``update`` cannot carry out; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Project:
    """The answers the template is rendered with."""

    name: str
    package: str
    kafka: bool = True
    kubernetes: bool = True
    ci: bool = True

    @property
    def answers(self) -> dict[str, Any]:
        """The template's questions and their answers."""
        return {
            "name": self.name,
            "package": self.package,
            "kafka": self.kafka,
            "kubernetes": self.kubernetes,
            "ci": self.ci,
        }


def check_name(name: str) -> str:
    """Check ``name`` and return its Python package name.

    Raises:
        ScaffoldError: (exit code 2) when the name is not a valid service name, not a
            DNS label, or its package name cannot be imported without clashing.
    """
    if not SERVICE_NAME.match(name):
        raise ScaffoldError(
            f"{name!r} is not a valid service name; use 1-63 lowercase letters, digits "
            "or '-', starting and ending with a letter or digit (e.g. 'billing' or "
            "'order-service').",
            EXIT_USAGE,
        )
    if not DNS_LABEL.match(name):
        raise ScaffoldError(
            f"{name!r} cannot name the project's Kubernetes objects and DNS host: a DNS "
            "label has at most 63 lowercase letters, digits and '-' (no '.' or '_'); "
            f"try {re.sub(r'[._]', '-', name)[:63]!r}.",
            EXIT_USAGE,
        )
    package = name.replace("-", "_")
    if not package.isidentifier() or keyword.iskeyword(package):
        raise ScaffoldError(
            f"{name!r} gives the package name {package!r}, which Python cannot import; "
            "start the name with a letter and avoid Python keywords.",
            EXIT_USAGE,
        )
    if package in _RESERVED or package in sys.stdlib_module_names:
        raise ScaffoldError(
            f"{name!r} gives the package name {package!r}, which would shadow the module "
            f"{package!r} the project needs; choose another name (e.g. '{name}-service').",
            EXIT_USAGE,
        )
    return package


def project_for(
    name: str, *, kafka: bool = True, kubernetes: bool = True, ci: bool = True
) -> Project:
    """The validated answers for a new project ``name`` (see :func:`check_name`)."""
    return Project(name, check_name(name), kafka=kafka, kubernetes=kubernetes, ci=ci)


def template_versions(root: Path | None = None) -> list[int]:
    """The template versions in ``root`` (default: the packaged ones), oldest first."""
    root = TEMPLATES if root is None else root
    versions = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise ScaffoldError(f"no project template in {root}; reinstall nativekit.", EXIT_FAILED)
    return versions


def check_target(target: Path, *, force: bool) -> None:
    """Refuse a target that is a file, or a non-empty directory unless ``force``.

    Raises:
        ScaffoldError: (exit code 1) when the target cannot be used.
    """
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a directory.", EXIT_FAILED)
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ScaffoldError(
            f"{target} already exists and is not empty; choose another directory, "
            "or pass --force to write the project files into it (files of the same "
            "name are overwritten, others are left alone).",
            EXIT_FAILED,
        )


def import_copier() -> Any:
    """The copier module, or a :class:`ScaffoldError` saying how to install it."""
    try:
        import copier
    except ImportError as exc:
        raise ScaffoldError(
            f"this command needs the copier template engine, which is not installed; "
            f"run: {INSTALL_HINT}",
            EXIT_FAILED,
        ) from exc
    return copier


def scaffold(project: Project, target: Path, *, force: bool = False) -> list[Path]:
    """Render the newest template for ``project`` into ``target``; returns the files written.

    Raises:
        ScaffoldError: for an unusable target (exit code 1) or a missing copier (1).
    """
    check_target(target, force=force)
    copier = import_copier()
    before = _snapshot(target)
    template = TEMPLATES / str(template_versions(TEMPLATES)[-1])
    try:
        copier.run_copy(
            str(template),
            str(target),
            data=project.answers,
            defaults=True,
            overwrite=True,
            quiet=True,
        )
    except OSError as exc:
        raise ScaffoldError(f"cannot write the project to {target}: {exc}", EXIT_FAILED) from exc
    except copier.errors.CopierError as exc:
        raise ScaffoldError(f"copier could not render the template: {exc}", EXIT_FAILED) from exc
    after = _snapshot(target)
    return sorted(path for path, stamp in after.items() if before.get(path) != stamp)


def _snapshot(root: Path) -> dict[Path, int]:
    """Files under ``root`` (outside .git) with their modification times."""
    if not root.is_dir():
        return {}
    return {
        path: path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }
