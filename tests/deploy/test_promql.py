"""The PromQL reader the monitoring tests rely on finds what expressions name."""

from __future__ import annotations

import pytest

from tests.deploy.promql import expand, names


def test_selectors_functions_and_grouping_are_told_apart() -> None:
    """Metric names with their matchers; functions, keywords, ranges, strings and numbers
    are not metrics; ``by`` labels are collected."""
    found = names(
        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket"
        '{service=~"$service", route!="/x{y}"}[$__rate_interval]))) / on (route) group_left '
        "sum without (status) (http_requests_total offset 5m) > bool 0.5 and vector(0)"
    )
    assert [s.metric for s in found.selectors] == [
        "http_request_duration_seconds_bucket",
        "http_requests_total",
    ]
    assert found.selectors[0].matchers == [("service", "=~", ".*"), ("route", "!=", "/x{y}")]
    assert found.grouping == {"le", "route", "status"}


def test_grafana_variables_are_expanded() -> None:
    """``$__rate_interval`` becomes a duration, ``$service`` a regex matching all."""
    assert expand('rate(x{service=~"$service"}[$__rate_interval])') == 'rate(x{service=~".*"}[5m])'


def test_a_selector_without_a_name_is_refused() -> None:
    """``{__name__=...}`` selectors would hide a metric name from the checks."""
    with pytest.raises(ValueError, match="without a metric name"):
        names('sum({__name__="x"})')
