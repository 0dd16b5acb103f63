"""A project made by `nativekit new`, installed in its own venv, passes its tests and linters.

The project is installed (not put on a path) into a fresh virtualenv whose
dependencies come from this checkout's environment (a .pth file), so nativekit
is this checkout and nothing is downloaded but the project's build backend.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

import nativekit
from nativekit.cli._main import main
from nativekit.cli._scaffold import template_versions
from tests.deploy.files import SHIPPED

pytestmark = pytest.mark.slow
NAME = "probe-svc"
NATIVEKIT_ROOT = Path(nativekit.__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def clean_env() -> dict[str, str]:
    """This environment without NATIVEKIT_* settings or a PYTHONPATH to leak into the project."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("NATIVEKIT_") and k != "PYTHONPATH"
    }


def run(
    command: list[str | Path], cwd: Path, timeout: float = 110
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_venv(path: Path, *, with_checkout: bool) -> Path:
    """A venv borrowing this environment's packages (and this checkout, if asked); its python."""
    done = run([sys.executable, "-m", "venv", path], cwd=path.parent)
    assert done.returncode == 0, done.stderr
    python = path / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], path)
    lines = [str(NATIVEKIT_ROOT)] if with_checkout else []
    lines += site.getsitepackages()
    (Path(purelib.stdout.strip()) / "_borrowed.pth").write_text("\n".join(lines) + "\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One generated project, installed into its own venv: (project dir, venv python)."""
    base = tmp_path_factory.mktemp("generated")
    project = base / NAME
    assert main(["new", NAME, str(project), "--no-prompt"]) == 0
    python = make_venv(base / "venv", with_checkout=True)
    done = run([python, "-m", "pip", "install", "--quiet", "--no-deps", "."], project)
    assert done.returncode == 0, done.stdout + done.stderr
    return project, python


def test_generated_tests_pass(installed: tuple[Path, Path]) -> None:
    """pytest in the generated project passes every test, the crash matrix included."""
    project, python = installed
    done = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "10 passed" in done.stdout, done.stdout


def test_generated_project_runs_this_nativekit(installed: tuple[Path, Path]) -> None:
    """The venv imports nativekit from this checkout and the project from site-packages."""
    project, python = installed
    done = run(
        [
            python,
            "-c",
            "import nativekit, probe_svc; print(nativekit.__file__, probe_svc.__file__)",
        ],
        project.parent,
    )
    assert done.returncode == 0, done.stderr
    nk, pkg = done.stdout.split()
    assert Path(nk).is_relative_to(NATIVEKIT_ROOT) and "site-packages" in pkg


def test_generated_code_is_ruff_clean_and_formatted(installed: tuple[Path, Path]) -> None:
    """ruff check and ruff format --check find nothing to change."""
    project, _ = installed
    checked = run([RUFF, "check", "--no-cache", "."], project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = run([RUFF, "format", "--check", "--no-cache", "."], project)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.long_check  # a cold mypy over the project and nativekit, 20 s: make test-long
def test_generated_code_passes_mypy_strict(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """mypy --strict, configured by the generated pyproject.toml, finds no error."""
    project, python = installed
    done = run([python, "-m", "mypy", "--cache-dir", tmp_path / "mypy"], project)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "options"),
    [("b" * 63, ["--no-kafka", "--no-kubernetes", "--no-ci"]), ("a-1", ["--no-kafka"])],
)
def test_other_variants_are_ruff_clean(name: str, options: list[str], tmp_path: Path) -> None:
    """The longest name and the parts left out still give clean, formatted code."""
    assert main(["new", name, str(tmp_path / "p"), *options]) == 0
    for command in (["check"], ["format", "--check"]):
        done = run([RUFF, *command, "--no-cache", "."], tmp_path / "p")
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.long_check  # builds and installs a wheel, about a minute: make test-long
def test_wheel_ships_the_templates(tmp_path: Path) -> None:
    """The built wheel, installed in a fresh venv (not editable), runs `nativekit new`."""
    done = run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", NATIVEKIT_ROOT],
        tmp_path,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("nativekit-*.whl")
    python = make_venv(tmp_path / "venv", with_checkout=False)
    done = run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    where = run([python, "-c", "import nativekit; print(nativekit.__file__)"], tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout

    done = run([tmp_path / "venv" / "bin" / "nativekit", "new", "billing", "--no-prompt"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    made = tmp_path / "billing"
    assert (made / "src/billing/app.py").is_file() and (made / "k8s/deployment.yaml").is_file()
    assert (made / ".github/workflows/ci.yml").is_file() and (made / ".dockerignore").is_file()
    assert (made / "deploy/grafana/nativekit-dashboard.json").is_file()
    shipped = "from importlib.resources import files; print(sorted(p.name for d in ('grafana', "
    shipped += "'prometheus') for p in files('nativekit').joinpath('deploy', d).iterdir()))"
    listed = run([python, "-c", shipped], tmp_path)
    assert listed.stdout.strip() == str(sorted(Path(name).name for name in SHIPPED)), listed
    newest = template_versions()[-1]
    assert f"_commit: '{newest}'" in (made / ".copier-answers.yml").read_text()
    tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], made)
    assert tests.returncode == 0, tests.stdout + tests.stderr
