"""Test helpers: settings from the short 0.1 names the test helpers take as keywords."""

from __future__ import annotations

from typing import Any

from nativekit import Settings
from nativekit.settings._renames import MOVED


def grouped(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with 0.1 flat names (``saga_lease_seconds``) moved into their groups
    (``{"saga": {"lease_seconds": ...}}``), merged with groups given as dicts."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        rename = MOVED.get(name)
        if rename is None:
            if isinstance(value, dict) and isinstance(out.get(name), dict):
                out[name].update(value)
            else:
                out[name] = value
            continue
        if rename.scale != 1.0:
            value = value * rename.scale
        *groups, field = rename.new.split(".")
        target = out
        for group in groups:
            target = target.setdefault(group, {})
        target[field] = value
    return out


def settings(**values: Any) -> Settings:
    """Settings from keywords that may use the 0.1 flat names (test shorthand only)."""
    return Settings(**grouped(values))
