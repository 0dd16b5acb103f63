"""The Grafana dashboard imports cleanly (the structure Grafana needs), every expression is
valid PromQL and filtered by the service variable, it covers what operators look at, and
the copies in the generated project and the shop are the shipped file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.files import COPIES, SHIPPED, dashboard, expressions, panels, shipped
from tests.deploy.promql import expand, names
from tests.deploy.test_alert_rules import promtool, run

__all__ = ["promtool"]  # the fixture, used here too

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_has_uid_title_schema_and_variables() -> None:
    """A fixed uid (re-imports replace it), a data source variable for Prometheus and a
    multi-value ``service`` variable read from that data source."""
    board = dashboard()
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board["title"] and isinstance(board["schemaVersion"], int)
    assert "id" not in board or board["id"] is None  # an id would clash on import
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    service = variables["service"]
    assert service["type"] == "query" and service["datasource"] == DATASOURCE
    assert service["multi"] and service["includeAll"] and service["allValue"] == ".*"
    # a metric every service exposes from its start, whatever it uses
    assert service["query"]["query"] == "label_values(nativekit_readiness_changes_total, service)"


def test_panels_have_positions_ids_and_targets() -> None:
    """Every panel has a unique id and a gridPos inside the 24-column grid, panels do not
    overlap, and every non-row panel queries the data source variable with exprs."""
    seen_ids: set[int] = set()
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        title = panel.get("title")
        assert isinstance(panel["id"], int) and panel["id"] not in seen_ids, title
        seen_ids.add(panel["id"])
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"}, title
        assert all(isinstance(v, int) and v >= 0 for v in grid.values()), title
        assert grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title} overlaps another panel at {x},{y}"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["type"] in ("timeseries", "stat"), title
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), title
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == DATASOURCE, title


def test_every_selector_is_filtered_by_the_service_variable() -> None:
    """Choosing services in the ``service`` variable narrows every query of the dashboard."""
    for where, expr in expressions().items():
        if where.startswith("alert"):
            continue
        for selector in names(expr).selectors:
            assert ("service", "=~", ".*") in selector.matchers, f"{where}: {selector.metric}"
            assert '$service"' in expr


def test_dashboard_expressions_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses every expression (Grafana variables filled in) as a recording rule."""
    exprs = [expand(e) for w, e in expressions().items() if w.startswith("panel")]
    recorded = [{"record": f"nativekit:check:{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    done = run(promtool, "check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


@pytest.mark.parametrize(
    ("topic", "pattern"),
    [
        ("requests per route", r"sum by \(method, route\) \(rate\(http_requests_total"),
        ("errors per route", r'http_requests_total\{[^}]*status=~"5\.\."'),
        ("latency per route", r"http_request_duration_seconds_bucket"),
        ("saga outcomes", r"sagas_(completed|compensated|failed)_total"),
        ("sagas parked FAILED", r'nativekit_sagas_stored\{[^}]*status="FAILED"'),
        ("step durations", r"by \(le, saga, step, direction\) \(rate\(saga_step_duration_seconds"),
        ("consumer throughput", r"\(group, topic, outcome\) \(rate\(nativekit_messages_consumed"),
        ("lag per group", r"nativekit_consumer_lag"),
        ("dead letters per group",
         r"\(group, topic\) \(increase\(nativekit_messages_consumed_total"
         r'\{[^}]*outcome="dead_lettered"'),
        ("outbox backlog", r"nativekit_outbox_backlog"),
        ("cache hit ratio", r"cache_hits_total.*/.*cache_misses_total"),
    ],
)  # fmt: skip
def test_dashboard_covers(topic: str, pattern: str) -> None:
    """The panels operators need are there."""
    exprs = [e for w, e in expressions().items() if w.startswith("panel")]
    assert any(re.search(pattern, e) for e in exprs), topic


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: p.name)
@pytest.mark.parametrize("name", SHIPPED)
def test_copies_are_the_shipped_files(copy: Path, name: str) -> None:
    """The generated project's and the shop's ``deploy/`` hold the shipped files unchanged."""
    target = copy / name
    assert target.exists(), f"missing {target}: cp nativekit/{name} {target}"
    assert target.read_bytes() == shipped(name).read_bytes(), (
        f"{target} differs from nativekit/{name}: copy it again"
    )
