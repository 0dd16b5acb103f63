"""What a PromQL expression names: metric selectors with their label matchers, and the
labels of ``by``/``without``/``on``/``ignoring`` clauses. A small tokenizer, enough for the
expressions nativekit ships (tested in test_promql.py), not a PromQL parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Grafana's variables, replaced by values Prometheus accepts.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$service": ".*",
}
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
     "bool", "offset", "inf", "nan"}
)  # fmt: skip
_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"'  # a string
    r"|\[[^\]]*\]"  # a range or subquery
    r'|\{(?:"(?:\\.|[^"\\])*"|[^}"])*\}'  # label matchers (a value may hold a brace)
    r"|[A-Za-z_:][A-Za-z0-9_:]*"  # a name
    r"|\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|[smhdwy])?"  # a number or a duration
    r"|\S"
)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?')


@dataclass
class Selector:
    """One metric selector: ``name{label op "value", ...}``."""

    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Names:
    """The metrics and labels one expression names."""

    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def expand(expr: str) -> str:
    """``expr`` with Grafana's variables replaced (longest first)."""
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    return expr


def matchers(text: str) -> list[tuple[str, str, str]]:
    """The ``label op "value"`` matchers inside ``{...}``; raises on anything else."""
    body, found, pos = text[1:-1], [], 0
    while pos < len(body.rstrip()):
        match = _MATCHER.match(body, pos)
        if match is None:
            raise ValueError(f"cannot read label matchers {text!r} at {body[pos:]!r}")
        found.append((match.group(1), match.group(2), match.group(3)))
        pos = match.end()
    return found


def names(expr: str) -> Names:
    """The metric selectors and grouping labels of ``expr`` (Grafana variables allowed)."""
    tokens = _TOKEN.findall(expand(expr))
    out = Names()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in ("by", "without", "on", "ignoring", "group_left", "group_right"):
            if following == "(":
                end = tokens.index(")", i)
                out.grouping.update(t for t in tokens[i + 2 : end] if t != ",")
                i = end + 1
                continue
        elif re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", token) and token.lower() not in KEYWORDS:
            # a function or an aggregation is followed by its arguments or its grouping
            if following not in ("(", "by", "without"):
                selector = Selector(token)
                if following.startswith("{"):
                    selector.matchers = matchers(following)
                    i += 1
                out.selectors.append(selector)
        elif token.startswith("{"):
            raise ValueError(f"a selector without a metric name in {expr!r}: {token}")
        i += 1
    return out
