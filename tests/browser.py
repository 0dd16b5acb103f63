"""A real headless Chromium for tests of web pages (Debian's ``chromium`` + Playwright).

``browser`` (session) and ``page`` (per test) are pytest fixtures, registered in
``tests/conftest.py``. The browser is ``/usr/bin/chromium``; on a machine without
it, the fixture installs Debian's package (``apt-get install chromium``, as root),
once for all test workers. Playwright's own browser download is never used. A test
is skipped, saying why, only when no browser can be installed.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("NATIVEKIT_TEST_CHROMIUM", "/usr/bin/chromium"))
_LOCK = Path(tempfile.gettempdir()) / "nativekit-chromium-install.lock"


def install_chromium() -> str | None:
    """Make sure ``CHROMIUM`` exists; None when it does, else why it cannot."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and this machine has no apt-get to install 'chromium'"
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing; install it as root: apt-get install chromium"
    with _LOCK.open("w") as lock:  # one installer across pytest-xdist workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return None
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
        ):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                return f"{' '.join(command)} failed: {' | '.join(tail)}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is missing"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), shared by the session's tests."""
    why = install_chromium()
    if why is not None:
        pytest.skip(f"no browser for web page tests: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@dataclass
class Page:
    """A fresh browser page and everything it reported as an error."""

    page: Any
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    """A page in its own browser context; console errors, page errors and failed
    requests are collected in ``errors`` for the test to assert on."""
    context = browser.new_context()
    watched = Page(context.new_page())
    watched.page.on(
        "console",
        lambda m: watched.errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    watched.page.on("pageerror", lambda e: watched.errors.append(f"page error: {e}"))
    watched.page.on(
        "requestfailed", lambda r: watched.errors.append(f"request failed: {r.url} {r.failure}")
    )
    yield watched
    context.close()
