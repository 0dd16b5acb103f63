"""The console in a real headless Chromium, against a service on real Redis and Kafka.

It finds a saga parked FAILED by filter, reads the failing attempt's error in its
timeline, retries it from the page; replays a dead letter from the page and checks
it is handled once. Screenshots of each page are written to docs/img/ (they are the
ones docs/console.md shows, so they stay current).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from nativekit.testing.servers import free_port, port_open
from tests.browser import Page

ROOT = Path(__file__).parents[2]
SHOTS = ROOT / "docs" / "img"
TOKEN = "console-browser-test-token-0123456789"
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.kafka]


@pytest.fixture
def service(redis_url: str, kafka_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The console test app under uvicorn; stopped (and its Redis keys removed) after."""
    mark = f"console-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "CONSOLE_TEST_MARK": mark,
        "NATIVEKIT_REDIS_URL": redis_url,
        "NATIVEKIT_KAFKA_URL": kafka_url,
        "NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER": "false",  # Tansu has no InitProducerId
        "NATIVEKIT_CONSOLE_ENABLED": "true",
        "NATIVEKIT_AUTH_TOKEN": TOKEN,
        "NATIVEKIT_AUTH_TOKEN_SUBJECT": "alice",
        "NATIVEKIT_SAGA_KEY_PREFIX": f"test:saga:{mark}",
        "NATIVEKIT_CONSOLE_TRACE_URL": "https://tracing.example/trace/{trace_id}",
    }
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.console.console_app:svc",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=out,
        )  # fmt: skip
    switches = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: httpx.get(f"{base}/readyz").status_code == 200, 60, "ready", log)
        yield {"base": base, "mark": mark, "redis": switches, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for key in switches.scan_iter(f"*{mark}*"):
            switches.delete(key)
        switches.close()


def _wait(check: Any, seconds: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}" + (f": {log.read_text()[-3000:]}" if log else "")
            )
        time.sleep(0.1)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


def test_an_operator_retries_a_failed_saga_and_replays_a_dead_letter(
    page: Page, service: dict[str, Any]
) -> None:
    base, mark, switches = service["base"], service["mark"], service["redis"]
    console = f"{base}/_nativekit/console"
    switches.set(f"{mark}:broken", "1")
    order = f"order-{mark}"
    assert httpx.post(f"{base}/orders/{order}").status_code == 202
    assert httpx.post(f"{base}/payments/{order}").status_code == 202

    p = page.page
    p.goto(f"{console}/sagas")
    assert "Sign in" in p.title()
    shot(page, "login")
    p.fill("#token", TOKEN)
    p.click("button[type=submit]")
    p.wait_for_url(f"{console}/sagas")

    # the saga parks FAILED (after its pivot): find it by filter
    def failed_listed() -> bool:
        p.goto(f"{console}/sagas")
        p.select_option("select[name=status]", "FAILED")
        p.click(".filters button")
        return p.locator(f"text={order}").count() > 0

    _wait(failed_listed, 30, "the FAILED saga in the list", service["log"])
    shot(page, "sagas")
    p.click(f"text={order}")
    assert p.locator("#saga-status").inner_text() == "FAILED"
    timeline = p.locator("table.timeline").inner_text()
    assert "dispatch" in timeline and "carrier API answered 503" in timeline
    shot(page, "saga")
    p.click("text=Retry…")
    shot(page, "confirm")
    switches.delete(f"{mark}:broken")
    p.click("button.danger")
    assert "Done: retry" in p.locator(".notice").inner_text()

    def completed() -> bool:
        p.reload()
        return p.locator("#saga-status").inner_text() == "COMPLETED"

    _wait(completed, 30, "the retried saga to complete", service["log"])

    # the payment was dead-lettered while broken: replay it from the page
    def letter_listed() -> bool:
        p.goto(f"{console}/dead-letters?topic={mark}-payments.dlq")
        return p.locator("table.letters input[type=checkbox]").count() > 0

    _wait(letter_listed, 60, "the dead letter", service["log"])
    assert f"no order {order} here yet" in p.locator("table.letters").inner_text()
    shot(page, "dead-letters")
    p.locator("table.letters input[type=checkbox]").first.check()
    p.click("text=Replay the chosen letters")
    assert "replayed" in p.locator(".notice").inner_text()
    _wait(lambda: switches.get(f"{mark}:handled") == b"1", 30, "the replayed payment handled")
    time.sleep(1.0)  # a second handling would show by now
    assert switches.get(f"{mark}:handled") == b"1"

    p.goto(f"{console}/consumers")
    assert f"{mark}-payments" in p.content()
    shot(page, "consumers")
    # the one error is the browser reporting the login page's deliberate 401
    assert [e for e in page.errors if "status of 401" not in e] == []
