"""docs/dashboards.md's example copies the shipped files out of the package, and the page
lists every panel and every alert."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.files import DOCS, ROOT, SHIPPED, alerts, panels, shipped


def test_example_copies_the_shipped_files(tmp_path: Path) -> None:
    """Run as the page shows, it writes the dashboard and both rule files, unchanged."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/monitoring_files.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = sorted(Path(line) for line in done.stdout.splitlines())
    expected = sorted(tmp_path / Path(name).relative_to("deploy") for name in SHIPPED)
    assert written == expected
    for name in SHIPPED:
        assert (tmp_path / Path(name).relative_to("deploy")).read_bytes() == shipped(
            name
        ).read_bytes()


def test_page_lists_every_panel_and_alert() -> None:
    """Each panel title and alert name appears on docs/dashboards.md."""
    page = DOCS.read_text(encoding="utf-8")
    for panel in panels():
        assert f"**{panel['title']}**" in page or f"## {panel['title']}" in page, panel["title"]
    for rule in alerts():
        assert f"### {rule['alert']}" in page, rule["alert"]
