"""A project made by `nativekit new` works: its tests pass, its app serves, its code is clean."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import nativekit
from nativekit.cli.main import main
from nativekit.testing import serve

pytestmark = pytest.mark.slow
NAME = "probe-svc"
PACKAGE = "probe_svc"
NATIVEKIT_ROOT = Path(nativekit.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated project shared by this module's tests."""
    target = tmp_path_factory.mktemp("generated") / NAME
    assert main(["new", NAME, "--directory", str(target)]) == 0
    return target


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a tool with this interpreter, importing this nativekit, without NATIVEKIT_* leaks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATIVEKIT_")}
    env["PYTHONPATH"] = str(NATIVEKIT_ROOT)
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generated_tests_pass(project: Path) -> None:
    """`python -m pytest` in the generated project passes all of its tests."""
    done = run(["pytest", "-q", "-p", "no:cacheprovider"], project)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout


def test_generated_code_is_ruff_clean_and_formatted(project: Path) -> None:
    """ruff check and ruff format --check find nothing to change."""
    checked = run(["ruff", "check", "--no-cache", "."], project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = run(["ruff", "format", "--check", "--no-cache", "."], project)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_generated_code_passes_mypy_strict(project: Path, tmp_path: Path) -> None:
    """mypy --strict, configured by the generated pyproject.toml, finds no error."""
    done = run(["mypy", "--cache-dir", str(tmp_path / "mypy")], project)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def app_module(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The generated app module, imported from the project's src/ and forgotten afterwards."""
    monkeypatch.syspath_prepend(str(project / "src"))
    try:
        yield importlib.import_module(f"{PACKAGE}.app")
    finally:
        for module in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[module]


async def test_generated_app_serves_and_is_ready(app_module: ModuleType) -> None:
    """The generated app answers /readyz with its own check and round-trips an item."""
    async with serve(app_module.svc) as client:
        ready = await client.get("/readyz")
        created = await client.post("/items", json={"name": "mug"})
        fetched = await client.get(f"/items/{created.json()['item_id']}")
    assert ready.status_code == 200, ready.text
    assert ready.json()["serviceId"] == NAME
    assert ready.json()["checks"]["item-store"][0]["status"] == "pass"
    assert created.status_code == 201
    assert fetched.json() == {"item_id": created.json()["item_id"], "name": "mug", "quantity": 1}
