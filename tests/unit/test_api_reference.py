"""docs/api.md documents exactly the public names: each package's ``__all__``."""

from __future__ import annotations

import importlib
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "api.md"
#: The public packages, in the order the page lists them.
PACKAGES = [
    "nativekit",
    "nativekit.saga",
    "nativekit.messaging",
    "nativekit.cache",
    "nativekit.auth",
    "nativekit.client",
    "nativekit.testing",
    "nativekit.backends",
    "nativekit.backends.redis",
    "nativekit.backends.kafka",
]
INTRO = """# API reference

Every public name of nativekit, by package: exactly the names each package
lists in `__all__` (a test keeps this page and those lists in step). Anything
not listed here is an implementation detail that may change without notice.
"""


def render() -> str:
    """The page as generated from the packages' ``__all__``."""
    parts = [INTRO]
    for package in PACKAGES:
        names = importlib.import_module(package).__all__
        parts.append(f"\n## `{package}`\n")
        parts += [f"\n::: {package}.{name}\n" for name in names]
    return "".join(parts)


def test_the_api_page_lists_exactly_the_public_names() -> None:
    """The page is current; regenerate it with `python tests/unit/test_api_reference.py`."""
    assert PAGE.read_text(encoding="utf-8") == render()


def test_every_public_package_lists_sorted_public_names() -> None:
    """Each public package's __all__ is sorted and names only what the package defines."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        assert module.__all__ == sorted(module.__all__, key=str.casefold), package
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert missing == [], package


if __name__ == "__main__":
    PAGE.write_text(render(), encoding="utf-8")
