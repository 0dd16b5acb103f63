"""The monitoring files nativekit ships, where copies of them live, and their expressions."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
#: The package data (the source), relative to the ``nativekit`` package.
SHIPPED = (
    "deploy/grafana/nativekit-dashboard.json",
    "deploy/prometheus/nativekit-alerts.rules.yml",
    "deploy/prometheus/nativekit-prometheusrule.yaml",
)
#: Directories holding a copy of ``deploy/`` (the generated project's, the shop's).
COPIES = (
    ROOT / "nativekit/cli/templates/1/project",
    ROOT / "examples/shop",
)
ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")
DOCS = ROOT / "docs/dashboards.md"


def shipped(name: str) -> Path:
    """The installed package's copy of one shipped file."""
    return Path(str(resources.files("nativekit").joinpath(name)))


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard."""
    loaded: dict[str, Any] = json.loads(shipped(SHIPPED[0]).read_text(encoding="utf-8"))
    return loaded


def rules() -> dict[str, Any]:
    """The plain Prometheus rules file."""
    loaded: dict[str, Any] = yaml.safe_load(shipped(SHIPPED[1]).read_text(encoding="utf-8"))
    return loaded


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule manifest."""
    loaded: dict[str, Any] = yaml.safe_load(shipped(SHIPPED[2]).read_text(encoding="utf-8"))
    return loaded


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of the rules file."""
    return [rule for group in rules()["groups"] for rule in group["rules"] if "alert" in rule]


def panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside collapsed rows too."""
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard and the rules, by where it is."""
    found = {}
    for panel in panels():
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} target {target['refId']}"] = target["expr"]
    for rule in alerts():
        found[f"alert {rule['alert']}"] = rule["expr"]
    return found
