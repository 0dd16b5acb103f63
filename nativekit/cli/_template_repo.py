"""``nativekit update``: bring a project made by ``nativekit new`` to the newest template.

The model is copier's: render the template version the project was made from
(``_commit`` in ``.copier-answers.yml``) with the recorded answers, take the
difference between that and the project as the user's changes, render the
newest version over the project, and re-apply the user's changes; where both
changed the same lines, the file gets conflict markers.

Copier finds template versions as git tags, while nativekit ships its template
versions as package data (``nativekit/cli/templates/<version>``). So update
first builds a git repository holding one tagged commit per packaged version
at :data:`TEMPLATE_REPO` (the ``_src_path`` every project records), runs
copier, and removes the repository again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nativekit.cli import _scaffold as scaffold
from nativekit.cli._common import EXIT_FAILED
from nativekit.cli._scaffold import (
    ANSWERS_FILE,
    ScaffoldError,
    import_copier,
    template_versions,
)

#: Where update builds the template repository; ``~`` is expanded by copier too, so the
#: path recorded in every project's answers works for any user on any machine.
TEMPLATE_REPO = "~/.cache/nativekit/project-template"

_GIT_IDENTITY = (
    "-c", "user.name=nativekit", "-c", "user.email=nativekit@localhost",
    "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null",
)  # fmt: skip


@dataclass
class UpdateResult:
    """What ``nativekit update`` did."""

    old_version: int
    new_version: int
    changed: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd``; a failure is a :class:`ScaffoldError` with git's message."""
    done = subprocess.run(
        ["git", *_GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ScaffoldError(
            f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}", EXIT_FAILED
        )
    return done.stdout


def build_template_repo(dest: Path, root: Path) -> list[int]:
    """Make ``dest`` a git repository with one commit per template version, tagged with it.

    Returns the versions, oldest first.
    """
    versions = template_versions(root)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    _git("init", "--quiet", cwd=dest)
    for version in versions:
        for entry in dest.iterdir():
            if entry.is_dir() and entry.name != ".git":
                shutil.rmtree(entry)
            elif entry.is_file():
                entry.unlink()
        shutil.copytree(root / str(version), dest, dirs_exist_ok=True)
        # copytree keeps mtimes, so git's stat cache could take an edited file of the same
        # size for unchanged: hash every file afresh.
        (dest / ".git" / "index").unlink(missing_ok=True)
        _git("add", "--all", "--force", cwd=dest)
        _git("commit", "--quiet", "--allow-empty", "-m", f"template version {version}", cwd=dest)
        _git("tag", str(version), cwd=dest)
    return versions


@contextmanager
def template_repo(root: Path) -> Iterator[Path]:
    """The template repository at :data:`TEMPLATE_REPO`, locked and built for the block."""
    dest = Path(os.path.expanduser(TEMPLATE_REPO))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / f"{dest.name}.lock"):  # another update may be building it
        try:
            build_template_repo(dest, root)
            yield dest
        finally:
            shutil.rmtree(dest, ignore_errors=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` where the OS has flock (not on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_answers(project: Path) -> dict[str, Any]:
    """The answers file of a project made by ``nativekit new``."""
    import yaml

    path = project / ANSWERS_FILE
    if not path.is_file():
        raise ScaffoldError(
            f"{project} has no {ANSWERS_FILE}: it was not made by 'nativekit new' (or the "
            "file was deleted), so there is no template version to update from.",
            EXIT_FAILED,
        )
    answers = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(answers, dict) or answers.get("_src_path") != TEMPLATE_REPO:
        raise ScaffoldError(
            f"{path} does not come from nativekit's project template "
            f"(expected _src_path: {TEMPLATE_REPO}).",
            EXIT_FAILED,
        )
    return answers


def check_clean_git(project: Path) -> None:
    """Refuse a project outside git or with uncommitted changes (the merge must be reviewable)."""
    if shutil.which("git") is None:
        raise ScaffoldError("nativekit update needs git on PATH; install git.", EXIT_FAILED)
    if not _inside_git(project):
        raise ScaffoldError(
            f"{project} is not in a git repository; nativekit update merges through git. "
            "Run: git init && git add -A && git commit -m 'Project from nativekit new'",
            EXIT_FAILED,
        )
    if _git("status", "--porcelain", "--", ".", cwd=project).strip():
        raise ScaffoldError(
            f"{project} has uncommitted changes; commit or stash them first, so the "
            "update's changes can be reviewed (git diff) and undone.",
            EXIT_FAILED,
        )


def update(project: Path, *, root: Path | None = None) -> UpdateResult:
    """Merge the newest template version into ``project``, keeping the user's changes.

    Raises:
        ScaffoldError: (exit code 1) when the project has no answers file, is not a
            clean git work tree, or copier is missing.
    """
    copier = import_copier()  # before reading the answers: its PyYAML reads them
    answers = read_answers(project)
    check_clean_git(project)
    try:
        old = int(str(answers.get("_commit")))
    except ValueError:
        raise ScaffoldError(
            f"{project / ANSWERS_FILE} names no template version nativekit knows "
            f"(_commit: {answers.get('_commit')!r}); it should be a number.",
            EXIT_FAILED,
        ) from None
    root = scaffold.TEMPLATES if root is None else root
    newest = template_versions(root)[-1]
    if old >= newest:
        return UpdateResult(old, newest)
    with template_repo(root):
        try:
            copier.run_update(
                str(project), defaults=True, overwrite=True, quiet=True, conflict="inline"
            )
        except copier.errors.CopierError as exc:
            raise ScaffoldError(f"copier could not update {project}: {exc}", EXIT_FAILED) from exc
    # Porcelain paths are relative to the repository root; show them relative to the project.
    top = Path(_git("rev-parse", "--show-toplevel", cwd=project).strip())
    changed = [
        os.path.relpath(top / line[3:], project.resolve())
        for line in _git(
            "status", "--porcelain", "--untracked-files=all", "--", ".", cwd=project
        ).splitlines()
    ]
    conflicts = [path for path in changed if "<<<<<<< " in _read(project / path)]
    return UpdateResult(old, newest, changed, conflicts)


def _inside_git(path: Path) -> bool:
    done = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        cwd=path,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() == "true"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""
