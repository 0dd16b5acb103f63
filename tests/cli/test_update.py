"""`nativekit update` merges a newer template version into a project and keeps the user's edits."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nativekit.cli import _scaffold as scaffold
from nativekit.cli._main import main
from nativekit.cli._template_repo import TEMPLATE_REPO, build_template_repo

pytestmark = pytest.mark.slow  # git and copier subprocesses, ~1 s a test
NEWEST = scaffold.template_versions()[-1]


def git(project: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME: update builds its template repository under ~/.cache."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The packaged template versions plus a next one that changes the Dockerfile and README."""
    root = tmp_path / "templates"
    shutil.copytree(scaffold.TEMPLATES, root)
    nxt = root / str(NEWEST + 1)
    shutil.copytree(root / str(NEWEST), nxt)
    [answers] = (nxt / "project").glob("*copier_conf.answers_file*")
    answers.write_text(
        answers.read_text().replace(f'_commit="{NEWEST}"', f'_commit="{NEWEST + 1}"')
    )
    dockerfile = nxt / "project" / "Dockerfile.jinja"
    dockerfile.write_text(dockerfile.read_text().replace("python:3.11-slim", "python:3.12-slim"))
    readme = nxt / "project" / "README.md.jinja"
    readme.write_text(readme.read_text().replace("## Test it", "## Test it (new)"))
    monkeypatch.setattr(scaffold, "TEMPLATES", root)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project made by `nativekit new` from the packaged template, committed to git."""
    target = tmp_path / "billing"
    assert main(["new", "billing", str(target)]) == 0
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "new")
    return target


def test_update_keeps_the_users_edit_and_applies_the_templates(
    project: Path, templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's new dependency and route survive; the Dockerfile and answers move on."""
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"nativekit>=', '"orjson>=3",\n    "nativekit>=')
    )
    app = project / "src/billing/app.py"
    app.write_text(
        app.read_text() + '\n\n@svc.get("/hello")\nasync def hello() -> str:\n    return "hi"\n'
    )
    git(project, "commit", "-qam", "my edits")
    capsys.readouterr()

    assert main(["update", str(project)]) == 0

    assert '"orjson>=3",' in pyproject.read_text()
    assert '@svc.get("/hello")' in app.read_text()
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in (project / "Dockerfile").read_text()
    assert "## Test it (new)" in (project / "README.md").read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == str(NEWEST + 1) and answers["_src_path"] == TEMPLATE_REPO
    assert answers["name"] == "billing" and answers["kafka"] is True
    out = capsys.readouterr().out
    assert f"from template version {NEWEST} to {NEWEST + 1}" in out and "Dockerfile" in out
    assert not (Path(TEMPLATE_REPO).expanduser()).exists(), "the template repository is removed"


def test_a_clash_leaves_conflict_markers_and_exits_1(
    project: Path, templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line both the user and the template changed gets markers; the command says so."""
    dockerfile = project / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("python:3.11-slim", "python:3.13-slim"))
    git(project, "commit", "-qam", "newer python")
    assert main(["update", str(project)]) == 1
    text = dockerfile.read_text()
    assert "<<<<<<< before updating" in text and "python:3.13-slim" in text
    assert "python:3.12-slim" in text
    captured = capsys.readouterr()
    assert "Dockerfile  (conflict" in captured.out and "have conflicts" in captured.err


def test_a_current_project_is_left_alone(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A project at the newest version: nothing to do, exit 0, nothing changed."""
    assert main(["update", str(project)]) == 0
    assert f"at the current template version {NEWEST}" in capsys.readouterr().out
    assert git(project, "status", "--porcelain") == ""


def test_uncommitted_changes_are_refused(
    project: Path, templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dirty work tree exits 1 asking to commit first; the files stay as they were."""
    (project / "README.md").write_text("draft")
    assert main(["update", str(project)]) == 1
    assert "uncommitted changes" in capsys.readouterr().err
    assert (project / "README.md").read_text() == "draft"
    assert "3.11-slim" in (project / "Dockerfile").read_text()


def test_a_project_outside_git_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without git there is no reviewable merge: exit 1 with the commands to run."""
    target = tmp_path / "loose"
    assert main(["new", "billing", str(target)]) == 0
    assert main(["update", str(target)]) == 1
    assert "git init" in capsys.readouterr().err


def test_a_directory_not_made_by_new_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No .copier-answers.yml: exit 1 naming the missing file."""
    assert main(["update", str(tmp_path)]) == 1
    assert ".copier-answers.yml" in capsys.readouterr().err


def test_template_repository_has_a_tag_per_version(tmp_path: Path, templates: Path) -> None:
    """Each packaged version is one commit tagged with its number, oldest first."""
    repo = tmp_path / "repo"
    versions = build_template_repo(repo, templates)
    assert versions == [*scaffold.template_versions(templates)]
    tags = git(repo, "for-each-ref", "refs/tags", "--format=%(refname:short) %(subject)")
    assert dict(line.split(" ", 1) for line in tags.splitlines()) == {
        str(v): f"template version {v}" for v in versions
    }
    for older, newer in itertools.pairwise(versions):
        assert git(repo, "rev-parse", f"{newer}^") == git(repo, "rev-parse", str(older))
    changed = git(repo, "diff", "--name-only", str(NEWEST), str(NEWEST + 1)).split()
    assert "project/Dockerfile.jinja" in changed


def test_a_project_in_a_subdirectory_of_a_repository_is_updated(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a monorepo the project's files are updated and listed relative to the project."""
    repo = tmp_path / "mono"
    assert main(["new", "billing", str(repo / "services" / "billing")]) == 0
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "new")
    request.getfixturevalue("templates")  # the next version appears only now
    capsys.readouterr()
    assert main(["update", str(repo / "services" / "billing")]) == 0
    assert "python:3.12-slim" in (repo / "services/billing/Dockerfile").read_text()
    assert "\n  Dockerfile\n" in capsys.readouterr().out


def test_a_file_the_user_deleted_stays_deleted(project: Path, templates: Path) -> None:
    """Deleting a generated file (here compose.yaml) is a change the update keeps."""
    git(project, "rm", "-q", "compose.yaml")
    git(project, "commit", "-qm", "no compose")
    assert main(["update", str(project)]) == 0
    assert not (project / "compose.yaml").exists()
    assert "python:3.12-slim" in (project / "Dockerfile").read_text()
