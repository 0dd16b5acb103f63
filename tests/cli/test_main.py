"""The nativekit command: arguments, name rules, target directories, generated files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import nativekit
from nativekit import Service, Settings
from nativekit.cli._main import cli, main
from nativekit.cli._scaffold import TEMPLATES, ScaffoldError, project_for, template_versions
from nativekit.cli._template_repo import TEMPLATE_REPO
from nativekit.settings import ENV_PREFIX, variables

# Every file of a project made with all parts (`order-service`).
ALL_FILES = [
    ".copier-answers.yml",
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".gitignore",
    "Dockerfile",
    "Makefile",
    "README.md",
    "compose.yaml",
    "deploy/grafana/nativekit-dashboard.json",
    "deploy/prometheus/nativekit-alerts.rules.yml",
    "deploy/prometheus/nativekit-prometheusrule.yaml",
    "k8s/autoscale-on-lag/keda.yaml",
    "k8s/configmap.yaml",
    "k8s/deployment.yaml",
    "k8s/hpa.yaml",
    "k8s/kustomization.yaml",
    "k8s/pdb.yaml",
    "k8s/service.yaml",
    "pyproject.toml",
    "src/order_service/__init__.py",
    "src/order_service/app.py",
    "src/order_service/settings.py",
    "src/order_service/store.py",
    "tests/test_app.py",
    "tests/test_consumer.py",
    "tests/test_saga.py",
]


def files_in(target: Path) -> list[str]:
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())


def test_new_writes_every_project_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`new NAME DIR` writes the whole project with the name filled in and says what's next."""
    target = tmp_path / "proj"
    assert main(["new", "order-service", str(target)]) == 0
    assert files_in(target) == ALL_FILES
    for name in files_in(target):
        path = target / name
        if name.startswith("deploy/"):  # Grafana's and Prometheus's own {{ }}: copied as is
            assert path.read_bytes() == (Path(nativekit.__file__).parent / name).read_bytes()
        else:
            assert "{{" not in path.read_text() and "{%" not in path.read_text(), path
    app = (target / "src/order_service/app.py").read_text()
    assert 'svc = nativekit.Service("order-service")' in app and "app = svc.app" in app
    assert 'name = "order-service"' in (target / "pyproject.toml").read_text()
    out = capsys.readouterr().out
    assert f"Created service 'order-service' in {target}" in out and "make test" in out
    assert "  k8s/deployment.yaml\n" in out


def test_answers_record_the_template_version_and_choices(tmp_path: Path) -> None:
    """.copier-answers.yml holds the newest template version, its source and the answers."""
    assert main(["new", "billing", str(tmp_path), "--no-ci"]) == 0
    answers = yaml.safe_load((tmp_path / ".copier-answers.yml").read_text())
    assert answers == {
        "_commit": str(template_versions()[-1]),
        "_src_path": TEMPLATE_REPO,
        "name": "billing",
        "package": "billing",
        "kafka": True,
        "kubernetes": True,
        "ci": False,
    }


@pytest.mark.parametrize("version", template_versions())
def test_each_template_version_records_itself(version: int) -> None:
    """Every packaged version's answers file names that version and update's repository."""
    [answers] = (TEMPLATES / str(version) / "project").glob("*copier_conf.answers_file*")
    text = answers.read_text()
    assert f'_commit="{version}"' in text and f'_src_path="{TEMPLATE_REPO}"' in text


def test_without_kafka_there_is_no_consumer_and_no_kafka_anywhere(tmp_path: Path) -> None:
    """--no-kafka drops the consumer, its test and Kafka from compose, env and manifests."""
    assert main(["new", "billing", str(tmp_path), "--no-kafka"]) == 0
    assert not (tmp_path / "tests/test_consumer.py").exists()
    assert "@svc.consumer" not in (tmp_path / "src/billing/app.py").read_text()
    assert "kafka:" not in (tmp_path / "compose.yaml").read_text()
    assert "kafka://" not in (tmp_path / ".env.example").read_text()
    config = yaml.safe_load((tmp_path / "k8s/configmap.yaml").read_text())
    assert config["data"]["NATIVEKIT_KAFKA_URL"] == "memory://"


def test_without_kubernetes_and_ci_those_files_are_left_out(tmp_path: Path) -> None:
    """--no-kubernetes and --no-ci leave out k8s/ and .github/."""
    assert main(["new", "billing", str(tmp_path), "--no-kubernetes", "--no-ci"]) == 0
    assert not (tmp_path / "k8s").exists() and not (tmp_path / ".github").exists()
    assert (tmp_path / "Dockerfile").is_file() and (tmp_path / "compose.yaml").is_file()


def test_new_defaults_to_a_directory_named_after_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without DIR the project goes to ./NAME; --directory works like DIR."""
    monkeypatch.chdir(tmp_path)
    assert main(["new", "billing"]) == 0
    assert (tmp_path / "billing/src/billing/app.py").is_file()
    assert main(["new", "payments", "-d", "elsewhere"]) == 0
    assert (tmp_path / "elsewhere/src/payments/app.py").is_file()


def test_dir_given_twice_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DIR and --directory together exit 2."""
    assert main(["new", "billing", str(tmp_path / "a"), "-d", str(tmp_path / "b")]) == 2
    assert "Give the directory once" in capsys.readouterr().err


def test_missing_name_without_a_terminal_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Scripts must pass NAME: without a terminal nothing is asked, exit 2."""
    assert main(["new", "--no-prompt"]) == 2
    assert "Missing argument 'NAME'" in capsys.readouterr().err


def test_prompts_ask_for_the_name_and_the_parts_not_given(tmp_path: Path) -> None:
    """With --prompt the name and each part not set by a flag are asked for."""
    result = CliRunner().invoke(
        cli, ["new", "--prompt", "--no-ci", "-d", str(tmp_path)], input="billing\nn\ny\n"
    )
    assert result.exit_code == 0, result.output
    assert "Service name" in result.output and "Use Kafka" in result.output
    assert "GitHub Actions" not in result.output
    answers = yaml.safe_load((tmp_path / ".copier-answers.yml").read_text())
    assert (answers["name"], answers["kafka"], answers["kubernetes"], answers["ci"]) == (
        "billing",
        False,
        True,
        False,
    )


def test_missing_copier_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without copier, `new` exits 1 naming the extra to install and writes nothing."""
    monkeypatch.setitem(sys.modules, "copier", None)
    assert main(["new", "billing", str(tmp_path / "p")]) == 1
    assert "pip install 'nativekit[cli]'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_makefile_keeps_make_syntax(tmp_path: Path) -> None:
    """Make variables survive rendering, recipes are tab-indented, `make test` runs pytest."""
    main(["new", "billing", str(tmp_path)])
    makefile = (tmp_path / "Makefile").read_text()
    assert "\t$(PY) -m pytest\n" in makefile
    assert "uvicorn billing.app:app" in makefile
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=10
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert ".venv/bin/python -m pytest" in dry_run.stdout


def test_env_example_names_only_existing_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every NATIVEKIT_* variable in .env.example is a Settings field, and the file loads."""
    main(["new", "billing", str(tmp_path)])
    names = {
        line.lstrip("# ").split("=", 1)[0]
        for line in (tmp_path / ".env.example").read_text().splitlines()
        if line.lstrip("# ").startswith(ENV_PREFIX)
    }
    fields = set(variables())
    assert {"NATIVEKIT_ENVIRONMENT", "NATIVEKIT_REDIS_URL", "NATIVEKIT_KAFKA_URL"} <= names
    assert names <= fields, names - fields
    monkeypatch.delenv("NATIVEKIT_ENVIRONMENT", raising=False)
    loaded = Settings(_env_file=tmp_path / ".env.example")
    assert loaded.environment == "development" and loaded.redis.url == "memory://"


@pytest.mark.parametrize("name", ["Billing", "-billing", "billing-", "bill ing", "a" * 65, ""])
def test_invalid_name_exits_2_saying_what_is_accepted(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name Service would refuse exits 2, names the accepted characters, writes nothing."""
    assert main(["new", "-d", str(tmp_path / "p"), "--", name]) == 2
    err = capsys.readouterr().err
    assert "is not a valid service name" in err and "lowercase letters, digits" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("name", ["v2.orders", "order_service", "a" * 64])
def test_name_that_is_not_a_dns_label_exits_2(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """'.', '_' and a 64th character are valid for Service but not for a DNS label: exit 2."""
    Service(name, settings=Settings(_env_file=None))
    assert main(["new", name, "-d", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "DNS" in err and "'-'" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "name", ["billing", "order-service", "a", "v2-orders-api", "9lives", "json", "Bad", "x-"]
)
def test_accepted_names_are_service_names(name: str) -> None:
    """Every name the command accepts is one Service accepts too."""
    try:
        project_for(name)
    except ScaffoldError:
        return
    Service(name, settings=Settings(_env_file=None))


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


def test_package_name_turns_dashes_into_underscores() -> None:
    """'-' becomes '_' in the package name; the service name is kept."""
    project = project_for("v2-order-service")
    assert (project.name, project.package) == ("v2-order-service", "v2_order_service")


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
    assert (tmp_path / "README.md").read_text().startswith("# billing")
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


def test_docs_page_shows_every_generated_file() -> None:
    """docs/cli.md's layout names each file the command writes."""
    page = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for path in ALL_FILES:
        assert Path(path).name in page, path
