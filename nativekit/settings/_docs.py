"""The reference tables of docs/configuration.md, generated from the settings models.

``python -m nativekit.settings._docs docs/configuration.md`` rewrites the table after
each ``<!-- settings: GROUP -->`` marker (``service`` for the top-level fields,
``renamed`` for the 0.1 names) and keeps the hand-written text around them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic.fields import FieldInfo

from nativekit.settings import Settings, groups
from nativekit.settings._renames import RENAMED_VARIABLES, env_variable

_MARKER = re.compile(r"^(<!-- settings: (\w+) -->)\n\n?(?:\|.*\n)*", re.MULTILINE)


def table(section: str) -> str:
    """The markdown table for one marker: a group, ``service`` or ``renamed``."""
    if section == "renamed":
        rows = [
            f"| `{r.old_variable}` | `{r.new_variable}`"
            f"{' (seconds, was milliseconds)' if r.scale != 1.0 else ''} |"
            for r in RENAMED_VARIABLES
        ]
        return "| Variable of 0.1 | Variable now |\n|---|---|\n" + "".join(f"{r}\n" for r in rows)
    if section == "service":
        fields = {n: f for n, f in Settings.model_fields.items() if n not in groups()}
        prefix = ""
    else:
        fields = dict(groups()[section].model_fields)
        prefix = f"{section}."
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{env_variable(prefix + name)}` | {_default(field)} | {meaning} |")
    return "\n".join(lines) + "\n"


def render(page: str) -> str:
    """``page`` with every marked table regenerated.

    Raises:
        ValueError: a group of the settings has no marker on the page.
    """
    sections = [section for _, section in _MARKER.findall(page)]
    missing = [s for s in ("service", *groups(), "renamed") if s not in sections]
    if missing:
        raise ValueError(f"no '<!-- settings: NAME -->' marker for {', '.join(missing)}")
    return _MARKER.sub(lambda m: f"{m.group(1)}\n\n{table(m.group(2))}", page)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed (see meaning)"
    value = field.get_default(call_default_factory=False)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def main(argv: list[str]) -> int:
    """Rewrite the page named in ``argv`` (default docs/configuration.md) in place."""
    path = Path(argv[0] if argv else "docs/configuration.md")
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
