"""The 0.1 names of settings: deprecated variables and flat keywords, mapped to the groups."""

from __future__ import annotations

import warnings
from contextlib import suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from nativekit.settings._renames import MOVED, RENAMED_VARIABLES, Rename

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings, EnvSettingsSource

#: Deprecated variables the settings being built read (set per construction).
USED: ContextVar[list[Rename]] = ContextVar("nativekit_settings_legacy_used")


def put(values: dict[str, Any], rename: Rename, value: Any) -> None:
    """Store ``value`` (given in the old unit) at the grouped path of ``rename``."""
    if rename.scale != 1.0:
        # a value that is no number stays as given: validation names the variable
        with suppress(TypeError, ValueError):
            value = float(value) * rename.scale
    *groups, field = rename.new.split(".")
    target = values
    for group in groups:
        target = target.setdefault(group, {})
    target[field] = value


def nest_keywords(values: dict[str, Any]) -> dict[str, Any]:
    """Constructor keywords with the flat 0.1 names moved to their groups."""
    flat = [name for name in values if name in MOVED]
    if not flat:
        return values
    warnings.warn(
        "Settings("
        + ", ".join(f"{name}=..." for name in flat)
        + ") uses names deprecated since 0.2; pass the groups instead: "
        + ", ".join(f"{name} -> {MOVED[name].new}" for name in flat)
        + ".",
        DeprecationWarning,
        stacklevel=4,
    )
    nested = {k: _as_dict(v) for k, v in values.items() if k not in MOVED}
    for name in flat:
        put(nested, MOVED[name], values[name])
    return nested


def _as_dict(value: Any) -> Any:
    # A group passed as a model next to flat keywords for the same group must merge.
    dump = getattr(value, "model_dump", None)
    return dump(exclude_unset=True) if callable(dump) else value


class LegacyVariables(PydanticBaseSettingsSource):
    """Reads the 0.1 variable names from the environment and ``.env``, below the new ones."""

    def __init__(self, settings_cls: type[BaseSettings], *sources: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self.sources = sources

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: this source answers for all fields at once in ``__call__``."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        variables: dict[str, str | None] = {}
        for source in reversed(self.sources):
            variables.update(source.env_vars)
        found: dict[str, Any] = {}
        used = USED.get(None)
        for rename in RENAMED_VARIABLES:
            value = variables.get(rename.old_variable.lower())
            if value is None:
                continue
            put(found, rename, value)
            if used is not None:
                used.append(rename)
        return found
