"""The nativekit command: arguments, name rules, target directories, generated files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nativekit
from nativekit import ConfigError, Service, Settings
from nativekit.cli.main import main
from nativekit.cli.scaffold import FILES, ScaffoldError, project_for
from nativekit.settings import ENV_PREFIX


def test_new_writes_every_project_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`new NAME -d DIR` writes the listed files with the name filled in and says what's next."""
    target = tmp_path / "proj"
    assert main(["new", "order-service", "--directory", str(target)]) == 0
    written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert written == sorted(path.format(package="order_service") for path in FILES)
    for path in target.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    app = (target / "src/order_service/app.py").read_text()
    assert 'svc = nativekit.Service("order-service")' in app and "app = svc.app" in app
    assert 'name = "order-service"' in (target / "pyproject.toml").read_text()
    out = capsys.readouterr().out
    assert f"Created service 'order-service' in {target}" in out and "make test" in out


def test_new_defaults_to_a_directory_named_after_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --directory the project goes to ./NAME."""
    monkeypatch.chdir(tmp_path)
    assert main(["new", "billing"]) == 0
    assert (tmp_path / "billing/src/billing/app.py").is_file()


def test_makefile_keeps_make_syntax(tmp_path: Path) -> None:
    """Make variables survive rendering, recipes are tab-indented, `make test` runs pytest."""
    main(["new", "billing", "-d", str(tmp_path)])
    makefile = (tmp_path / "Makefile").read_text()
    assert "\t$(PY) -m pytest\n" in makefile
    assert "uvicorn billing.app:app" in makefile
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=10
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert ".venv/bin/python -m pytest" in dry_run.stdout


def test_dockerfile_is_multi_stage_and_runs_as_non_root(tmp_path: Path) -> None:
    """The image is built in one stage, runs as an unprivileged user and serves the app."""
    main(["new", "billing", "-d", str(tmp_path)])
    lines = (tmp_path / "Dockerfile").read_text().splitlines()
    assert sum(line.startswith("FROM ") for line in lines) == 2
    user = next(line for line in lines if line.startswith("USER "))
    assert user.split()[1] not in ("root", "0")
    assert '"billing.app:app"' in lines[-1]


def test_env_example_names_only_existing_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every NATIVEKIT_* variable in .env.example is a Settings field, and the file loads."""
    main(["new", "billing", "-d", str(tmp_path)])
    names = {
        line.lstrip("# ").split("=", 1)[0]
        for line in (tmp_path / ".env.example").read_text().splitlines()
        if line.lstrip("# ").startswith(ENV_PREFIX)
    }
    fields = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    assert {"NATIVEKIT_ENVIRONMENT", "NATIVEKIT_REDIS_URL", "NATIVEKIT_KAFKA_URL"} <= names
    assert names <= fields, names - fields
    monkeypatch.delenv("NATIVEKIT_ENVIRONMENT")
    loaded = Settings(_env_file=tmp_path / ".env.example")
    assert loaded.environment == "development" and loaded.redis_url == "memory://"


@pytest.mark.parametrize("name", ["Billing", "-billing", "billing-", "bill ing", "a" * 65, ""])
def test_invalid_name_exits_2_saying_what_is_accepted(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name Service would refuse exits 2, names the accepted characters, writes nothing."""
    assert main(["new", "-d", str(tmp_path / "p"), "--", name]) == 2
    err = capsys.readouterr().err
    assert "is not a valid service name" in err and "lowercase letters, digits" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "name", ["billing", "order-service", "a", "v2.orders_api", "9lives", "json", "Bad", "x-"]
)
def test_name_rule_is_the_service_rule(name: str) -> None:
    """The command accepts a name's characters exactly when Service does."""
    try:
        Service(name, settings=Settings(_env_file=None))
        service_accepts = True
    except ConfigError:
        service_accepts = False
    try:
        project_for(name)
        cli_rejects_characters = False
    except ScaffoldError as exc:
        cli_rejects_characters = "is not a valid service name" in str(exc)
    assert service_accepts is not cli_rejects_characters


@pytest.mark.parametrize(
    ("name", "reason"),
    [("9lives", "Python cannot import"), ("class", "Python cannot import"), ("json", "shadow")],
)
def test_name_whose_package_cannot_work_exits_2(
    name: str, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Names giving a non-importable or shadowing package name exit 2 with the reason."""
    assert main(["new", name, "-d", str(tmp_path / "p")]) == 2
    assert reason in capsys.readouterr().err


def test_package_name_turns_dashes_and_dots_into_underscores() -> None:
    """'-' and '.' become '_' in the package name; the service name is kept."""
    project = project_for("v2.order-service")
    assert (project.name, project.package) == ("v2.order-service", "v2_order_service")


def test_non_empty_directory_without_force_exits_1_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing non-empty target is refused (exit 1) and left as it was."""
    (tmp_path / "README.md").write_text("mine")
    assert main(["new", "billing", "-d", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--force" in err
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    assert (tmp_path / "README.md").read_text() == "mine"


def test_force_writes_into_a_non_empty_directory(tmp_path: Path) -> None:
    """--force writes the project, overwriting same-named files and keeping the others."""
    (tmp_path / "README.md").write_text("mine")
    (tmp_path / "notes.txt").write_text("keep")
    assert main(["new", "billing", "-d", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "README.md").read_text().startswith("# Billing")
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_empty_existing_directory_is_used(tmp_path: Path) -> None:
    """An existing empty directory needs no --force."""
    assert main(["new", "billing", "-d", str(tmp_path)]) == 0
    assert (tmp_path / "pyproject.toml").is_file()


def test_target_that_is_a_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A target path that is a file is refused even with --force."""
    target = tmp_path / "billing"
    target.write_text("")
    assert main(["new", "billing", "-d", str(target), "--force"]) == 1
    assert "is not a directory" in capsys.readouterr().err


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`version` and `--version` print nativekit's version."""
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith(f"nativekit {nativekit.__version__} (Python ")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"nativekit {nativekit.__version__}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the help goes to stderr with exit code 2."""
    assert main([]) == 2
    assert "new" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command exits 2 and names the command."""
    assert main(["bogus"]) == 2
    assert "No such command 'bogus'" in capsys.readouterr().err


def test_python_m_nativekit_runs_the_command() -> None:
    """`python -m nativekit version` works like the installed script."""
    done = subprocess.run(
        [sys.executable, "-m", "nativekit", "version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"nativekit {nativekit.__version__}")


def test_templates_leave_dollars_alone_and_reject_unknown_placeholders() -> None:
    """`$` stays literal; a misspelt or malformed {{placeholder}} fails rendering."""
    from nativekit.cli.scaffold import _Template

    assert _Template("$(PY) ${X} $$ {{name}}").substitute(name="n") == "$(PY) ${X} $$ n"
    with pytest.raises(KeyError):
        _Template("{{nmae}}").substitute(name="n")
    with pytest.raises(ValueError):
        _Template("{{ name }}").substitute(name="n")


def test_docs_page_shows_every_generated_file() -> None:
    """docs/cli.md's layout names each file the command writes."""
    page = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for path in FILES:
        assert Path(path.format(package="order_service")).name in page, path
