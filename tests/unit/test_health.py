"""Liveness, readiness and startup probes."""

from __future__ import annotations

import asyncio
from typing import Any

from nativekit import CheckResult, Service, Settings
from nativekit.testing import serve
from tests.support import grouped


def make_service(**overrides: Any) -> Service:
    return Service("probed", settings=Settings(_env_file=None, **grouped(overrides)))


async def test_probes_pass_when_started() -> None:
    """All three probes answer health+json pass once the service started."""
    async with serve(make_service()) as client:
        for path in ("/livez", "/startupz", "/readyz"):
            r = await client.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == "application/health+json"
            assert r.json()["status"] == "pass"
            assert r.json()["serviceId"] == "probed"


async def test_readiness_reports_each_check() -> None:
    """Each check reports status, timing and output; one failing critical check fails readiness."""
    svc = make_service()

    @svc.readiness_check("db:ping")
    async def db() -> CheckResult:
        return CheckResult(observed_value=1.5, observed_unit="ms")

    @svc.readiness_check("search:ping", critical=False)
    async def search() -> None:
        raise ConnectionError("search is down")

    @svc.readiness_check("queue:ping")
    async def queue() -> None:
        raise ConnectionError("queue is down")

    async with serve(svc) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "fail"
    assert body["checks"]["db:ping"][0]["status"] == "pass"
    assert body["checks"]["db:ping"][0]["observedValue"] == 1.5
    assert body["checks"]["search:ping"][0]["status"] == "warn"
    assert "search is down" in body["checks"]["search:ping"][0]["output"]
    assert body["checks"]["queue:ping"][0]["status"] == "fail"
    assert "durationMs" in body["checks"]["queue:ping"][0]


async def test_warning_keeps_service_ready() -> None:
    """A warn result answers 200 with status warn."""
    svc = make_service()

    @svc.readiness_check("backlog")
    async def backlog() -> CheckResult:
        return CheckResult(status="warn", output="backlog 120")

    async with serve(svc) as client:
        r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["status"] == "warn"


async def test_slow_check_times_out_and_checks_run_concurrently() -> None:
    """A check over its timeout fails; checks run concurrently, not one after another."""
    svc = make_service(health_cache_ttl=0)

    @svc.readiness_check("slow-a", timeout=0.2)
    async def slow_a() -> None:
        await asyncio.sleep(5)

    @svc.readiness_check("slow-b", timeout=0.2)
    async def slow_b() -> None:
        await asyncio.sleep(5)

    async with serve(svc) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await client.get("/readyz")
        elapsed = loop.time() - started
    assert r.status_code == 503
    assert "no answer within 0.2s" in r.json()["checks"]["slow-a"][0]["output"]
    assert elapsed < 0.39  # two 0.2 s timeouts in parallel, not in series


async def test_results_are_cached_briefly() -> None:
    """Probe storms within the cache interval run each check once."""
    svc = make_service(health_cache_ttl=30)
    calls = 0

    @svc.readiness_check("counted")
    async def counted() -> None:
        nonlocal calls
        calls += 1

    async with serve(svc) as client:
        await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
    assert calls == 1


async def test_not_ready_before_start_and_while_draining() -> None:
    """Readiness and startup fail before startup; readiness fails while draining."""
    svc = make_service()
    async with serve(svc.app) as client:
        svc.health.started = False
        assert (await client.get("/startupz")).status_code == 503
        assert (await client.get("/readyz")).json()["output"] == "starting"
        svc.health.started = True
        svc.health.draining = True
        r = await client.get("/readyz")
        assert r.status_code == 503 and r.json()["output"] == "draining"
        assert (await client.get("/livez")).status_code == 200
        svc.health.draining = False


async def test_service_started_again_after_shutdown_is_ready() -> None:
    """A service served, stopped and served again (as tests do) answers /readyz 200 again."""
    svc = make_service()
    for _ in range(2):
        async with serve(svc) as client:
            r = await client.get("/readyz")
        assert r.status_code == 200, r.text


async def test_readiness_is_exposed_as_metrics_with_its_changes() -> None:
    """``nativekit_ready`` follows what /readyz answered (starting, a failing check, ready,
    draining), ``nativekit_readiness_changes_total`` counts each ready/not-ready switch, and
    ``nativekit_readiness_check_up`` says which check failed."""
    from tests.unit.test_metrics import samples

    svc = make_service(telemetry={"health_cache_seconds": 0})
    broken = True

    @svc.readiness_check("db:ping")
    async def db() -> None:
        if broken:
            raise ConnectionError("db is down")

    @svc.readiness_check("search:ping", critical=False)
    async def search() -> CheckResult:
        return CheckResult(status="warn", output="slow")

    async def scrape(client: Any) -> tuple[dict[Any, float], float, dict[str, float]]:
        text = (await client.get("/metrics")).text
        changes = samples(text, "nativekit_readiness_changes_total")
        checks = samples(text, "nativekit_readiness_check_up")
        return (
            samples(text, "nativekit_ready"),
            changes[(("service", "probed"),)],
            {dict(labels)["check"]: value for labels, value in checks.items()},
        )

    async with serve(svc) as client:
        assert (await scrape(client))[:2] == ({}, 0.0)  # no probe yet: no answer to report
        svc.health.started = False
        assert (await client.get("/readyz")).status_code == 503
        svc.health.started = True
        assert (await client.get("/readyz")).status_code == 503  # db is down
        ready, changes, checks = await scrape(client)
        assert ready == {(("service", "probed"),): 0.0} and changes == 0.0
        assert checks == {"db:ping": 0.0, "search:ping": 1.0}
        broken = False
        for expected in (1.0, 1.0):  # two ready answers in a row are one change
            assert (await client.get("/readyz")).status_code == 200
            ready, changes, checks = await scrape(client)
            assert ready == {(("service", "probed"),): expected} and changes == 1.0
        assert checks == {"db:ping": 1.0, "search:ping": 1.0}
        svc.health.draining = True
        assert (await client.get("/readyz")).status_code == 503
        ready, changes, _ = await scrape(client)
        assert ready == {(("service", "probed"),): 0.0} and changes == 2.0
        svc.health.draining = False
