"""The operator console in-process on memory backends: access, CSRF, pages and actions."""

from __future__ import annotations

import asyncio
import html
import uuid

import httpx
import pytest

import nativekit
from nativekit import ConfigError
from nativekit.saga import SagaStatus
from nativekit.testing import capture_logs, serve
from tests.console.console_support import CONSOLE, TOKEN, Paid, csrf_of, log_in, shop


async def failed_saga(svc: nativekit.Service, saga_id: str = "order-1") -> None:
    record = await (await svc.sagas.start("ship", {"order_id": "o-1"}, saga_id=saga_id)).wait(5)
    assert record.status is SagaStatus.FAILED


def test_the_console_refuses_to_start_without_authentication() -> None:
    """Enabled with no authentication: a ConfigError naming the settings to set."""
    svc = shop({}, [], auth={})
    with pytest.raises(ConfigError, match="NATIVEKIT_AUTH_TOKEN_FILE"):
        svc.app  # noqa: B018 - building the app is what refuses


async def test_no_token_gets_401_and_no_data() -> None:
    """Every page answers 401 with the login form, naming no saga, without a valid token."""
    broken = {"ship": True}
    svc = shop(broken, [])
    async with serve(svc) as client:
        await failed_saga(svc)
        for path in ("/sagas", "/sagas/order-1", "/dead-letters", "/consumers"):
            answer = await client.get(CONSOLE + path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "order-1" not in answer.text and 'name="token"' in answer.text
        wrong = await client.get(f"{CONSOLE}/sagas", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        refused = await log_in(client, "not-the-token")
        assert refused.status_code == 401 and "refused" in refused.text
        assert "nk_console" not in client.cookies


async def test_a_failed_saga_found_by_filter_shows_its_error_and_retry_completes_it() -> None:
    """Log in, filter FAILED, open the saga, confirm Retry: it completes; the action is
    logged with the principal."""
    broken = {"ship": True}
    svc = shop(broken, [])
    async with serve(svc) as client:
        await failed_saga(svc)
        signed = await log_in(client)
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        listing = await client.get(f"{CONSOLE}/sagas", params={"status": "FAILED"})
        assert listing.status_code == 200
        assert "order-1" in listing.text and "FAILED <b>1</b>" in listing.text
        assert "default-src 'none'" in listing.headers["content-security-policy"]
        page = await client.get(f"{CONSOLE}/sagas/order-1")
        assert "carrier down" in page.text and "Retry…" in page.text
        confirm = await client.get(f"{CONSOLE}/sagas/order-1/retry")
        assert confirm.status_code == 200 and "fresh retry policy" in confirm.text
        broken.update(ship=False)
        with capture_logs() as logs:
            done = await client.post(
                f"{CONSOLE}/sagas/order-1/retry", data={"csrf": csrf_of(confirm.text)}
            )
        assert done.status_code == 303
        record = await svc.sagas.wait("order-1", 5)
        assert record.status is SagaStatus.COMPLETED
        after = await client.get(done.headers["location"])
        assert "Done: retry" in after.text
        audit = [e for e in logs if e["event"] == "console.action"]
        assert audit and audit[0]["principal"] == "alice" and audit[0]["action"] == "saga.retry"


async def test_forms_without_the_csrf_token_or_from_another_site_are_refused() -> None:
    """A POST without the form's token, or with a foreign Origin, changes nothing (403)."""
    broken = {"ship": True}
    svc = shop(broken, [])
    async with serve(svc) as client:
        await failed_saga(svc)
        await log_in(client)
        confirm = await client.get(f"{CONSOLE}/sagas/order-1/abort")
        bare = await client.post(f"{CONSOLE}/sagas/order-1/abort", data={})
        foreign = await client.post(
            f"{CONSOLE}/sagas/order-1/abort",
            data={"csrf": csrf_of(confirm.text)},
            headers={"Origin": "https://evil.example"},
        )
        assert bare.status_code == 403 and foreign.status_code == 403
        assert (await svc.sagas.get("order-1")).status is SagaStatus.FAILED
        fine = await client.post(
            f"{CONSOLE}/sagas/order-1/abort", data={"csrf": csrf_of(confirm.text), "reason": "x"}
        )
        assert fine.status_code == 303
        assert (await svc.sagas.get("order-1")).status is SagaStatus.ABORTED


async def test_a_dead_letter_is_listed_and_replayed_once() -> None:
    """A message the consumer dead-lettered shows with its reason; replayed after the fix,
    it is handled once, and a second replay is skipped as already handled."""
    broken = {"consumer": True}
    handled: list[str] = []
    source = f"payments-{uuid.uuid4().hex[:8]}"  # the memory broker is process-wide
    svc = shop(broken, handled, topic=source)
    async with serve(svc) as client:
        await svc.publish(source, Paid(order_id="o-7", amount=12))
        topic = f"{source}.dlq"
        broker = svc.messaging.broker
        for _ in range(200):
            if broker.records(topic):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.02)
        await log_in(client)
        page = await client.get(f"{CONSOLE}/dead-letters", params={"topic": topic})
        assert "no order o-7" in page.text
        ref = f"{broker.records(topic)[0].partition}:{broker.records(topic)[0].offset}"  # type: ignore[attr-defined]
        letter = await client.get(f"{CONSOLE}/dead-letters/{topic}/{ref}")
        assert '"order_id": "o-7"' in html.unescape(letter.text)
        broken["consumer"] = False
        replayed = await client.post(
            f"{CONSOLE}/dead-letters/{topic}/replay",
            data={"csrf": csrf_of(letter.text), "ref": ref},
        )
        assert replayed.status_code == 200 and "<b>replayed</b>" in replayed.text
        for _ in range(200):
            if handled:
                break
            await asyncio.sleep(0.02)
        again = await client.post(
            f"{CONSOLE}/dead-letters/{topic}/replay",
            data={"csrf": csrf_of(letter.text), "ref": ref},
        )
        assert "already handled" in html.unescape(again.text)
        await asyncio.sleep(0.2)
    assert handled == ["o-7"]


async def test_consumers_page_shows_groups_partitions_and_readiness() -> None:
    """The consumer's group, its state and the readiness checks are on the page."""
    svc = shop({}, [])
    async with serve(svc) as client:
        answer = await client.get(
            f"{CONSOLE}/consumers", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answer.status_code == 200
    assert "orders.on_paid" in answer.text and "payments" in answer.text
    assert "Readiness" in answer.text


async def test_links_keep_the_root_path_behind_an_ingress() -> None:
    """Served under a root path (an ingress prefix), links and redirects include it."""
    svc = shop({"ship": True}, [])
    app = svc.app
    async with serve(svc):
        await failed_saga(svc)
        transport = httpx.ASGITransport(app=app, root_path="/ops")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            page = await client.get(f"/ops{CONSOLE}/sagas", headers=headers)
    assert page.status_code == 200
    assert f'href="/ops{CONSOLE}/sagas/order-1"' in page.text
    assert f'href="/ops{CONSOLE}/console.css"' in page.text
