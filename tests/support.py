"""Test helpers: settings from the short 0.1 names the test helpers take as keywords."""

from __future__ import annotations

from typing import Any

from nativekit import Settings
from nativekit.settings._renames import MOVED

#: Settings added after 0.1 that tests still name in the short form.
SHORT = {
    "consumer_join_timeout": "consumer.join_timeout_seconds",
    "consumer_lag_interval": "consumer.lag_interval_seconds",
    "consumer_group_default": "consumer.group_default",
    "consumer_group_instance_id": "consumer.group_instance_id",
    "saga_max_interruptions": "saga.max_interruptions",
}


def grouped(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with 0.1 flat names (``saga_lease_seconds``) moved into their groups
    (``{"saga": {"lease_seconds": ...}}``), merged with groups given as dicts."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        rename = MOVED.get(name)
        if rename is None and name in SHORT:
            *groups, field = SHORT[name].split(".")
            out.setdefault(groups[0], {})[field] = value
            continue
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
