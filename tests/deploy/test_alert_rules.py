"""The alerting rules: valid for promtool, each alert fires and stays quiet where it should
(promtool's rule unit tests), and the PrometheusRule holds the same rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.files import ALERT_TESTS, DOCS, SHIPPED, alerts, prometheus_rule, rules, shipped


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from PATH or the venv (`make test` unpacks Debian's into .venv/bin)."""
    venv = str(Path(sys.executable).parent)
    found = shutil.which("promtool") or shutil.which("promtool", path=venv)
    if found is None:
        pytest.skip(
            "promtool not found: the alert rule tests need it. On Debian/Ubuntu `make test` "
            "unpacks it from the 'prometheus' package into .venv/bin (apt-get download); "
            "elsewhere put promtool (from a Prometheus release) on PATH."
        )
    return found


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool with ``args``; its output is in the assertion message on failure."""
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_file_passes_promtool_check(promtool: str) -> None:
    """`promtool check rules` accepts the plain rules file and finds every alert."""
    done = run(promtool, "check", "rules", shipped(SHIPPED[1]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_prometheusrule_passes_promtool_check(promtool: str, tmp_path: Path) -> None:
    """The PrometheusRule's spec is a valid rules file too (what the operator loads)."""
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump(prometheus_rule()["spec"]))
    done = run(promtool, "check", "rules", spec)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_as_tested(promtool: str) -> None:
    """`promtool test rules` on tests/deploy/alerts_test.yml: input series for each alert
    firing (with its rendered summary and description) and not firing."""
    done = run(promtool, "test", "rules", ALERT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


#: Loosened or tightened rules the unit tests must catch, one (at least) per alert.
MUTATIONS = [
    ("max by (service, saga) (nativekit_sagas", "sum by (service, saga) (nativekit_sagas"),
    ("(deriv(nativekit_consumer_lag[10m]))) > 0", "(deriv(nativekit_consumer_lag[10m]))) >= 0"),
    ('outcome="dead_lettered"}[10m])) > 0', 'outcome!="processed"}[10m])) > 1'),
    ("(nativekit_outbox_backlog) > 1000", "(nativekit_outbox_backlog) > 100"),
    ("(nativekit_outbox_oldest_age_seconds) > 120", "(nativekit_outbox_oldest_age_seconds) > 600"),
    ("nativekit_readiness_changes_total[15m]) > 3", "nativekit_readiness_changes_total[15m]) > 1"),
    ("expr: nativekit_ready == 0", "expr: min_over_time(nativekit_ready[5m]) == 0"),
    ("(rate(http_requests_total[5m])) > 0.1", "(rate(http_requests_total[5m])) > 0.01"),
]  # fmt: skip


@pytest.mark.parametrize(("before", "after"), MUTATIONS, ids=[m[1] for m in MUTATIONS])
def test_the_unit_tests_catch_a_changed_rule(
    promtool: str, tmp_path: Path, before: str, after: str
) -> None:
    """With one rule changed, `promtool test rules` fails: the tests pin each threshold."""
    text = shipped(SHIPPED[1]).read_text(encoding="utf-8")
    assert text.count(before) == 1, before
    changed = tmp_path / "nativekit/deploy/prometheus/nativekit-alerts.rules.yml"
    changed.parent.mkdir(parents=True)
    changed.write_text(text.replace(before, after))
    copy = tmp_path / "tests/deploy/alerts_test.yml"
    copy.parent.mkdir(parents=True)
    shutil.copy(ALERT_TESTS, copy)
    done = run(promtool, "test", "rules", copy)
    assert done.returncode != 0, done.stdout


def test_prometheusrule_holds_exactly_the_rules_file() -> None:
    """The PrometheusRule is the rules file's groups under ``spec``, so they cannot drift."""
    manifest = prometheus_rule()
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"] == "nativekit-alerts"
    assert manifest["spec"] == rules()


def test_every_alert_has_for_severity_summary_description_and_runbook() -> None:
    """Each alert says how long it waits, how bad it is, what happened, and where its
    runbook section is (an anchor that exists in docs/dashboards.md)."""
    anchors = {
        re.sub(r"[^a-z0-9_-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
        for line in DOCS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Nativekit[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == f"docs/dashboards.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/dashboards.md has no section {name}"
        if rule.get("for") is not None:
            assert re.fullmatch(r"\d+m", rule["for"]), name


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    """alerts_test.yml checks each alert at least once firing and once with no alert."""
    tests = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    for rule in alerts():
        mine = [c for c in checks if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} never tested firing"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} never tested quiet"
