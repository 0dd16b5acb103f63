"""Liveness, readiness and startup probes in the IETF health+json shape.

``/livez`` answers while the event loop turns; ``/startupz`` once the service
finished starting; ``/readyz`` runs every registered check concurrently, each
with a timeout, and reuses the results for a short time so probe storms do not
reach the dependencies. A check returns nothing (pass), a
:class:`CheckResult`, or raises (fail, or warn for non-critical checks).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

Status = Literal["pass", "warn", "fail"]
HEALTH_JSON = "application/health+json"
PROBE_PATHS = frozenset({"/livez", "/readyz", "/startupz"})


@dataclass
class CheckResult:
    """What a check observed; return it from a check to report details or a warning."""

    status: Status = "pass"
    output: str | None = None
    observed_value: Any = None
    observed_unit: str | None = None


CheckFunc = Callable[[], Awaitable["CheckResult | None"]]
#: A startup condition: None once met, else a (failing) result saying what is awaited.
StartupFunc = Callable[[], "CheckResult | None"]


@dataclass
class Check:
    """A registered readiness check."""

    name: str
    func: CheckFunc
    timeout: float
    #: Whether a failure fails readiness (else it warns); a callable decides per run.
    critical: bool | Callable[[], bool] = True
    component_type: str = "component"
    active: Callable[[], bool] | None = None

    @property
    def is_critical(self) -> bool:
        """Whether a failure of this check fails readiness now."""
        return self.critical() if callable(self.critical) else self.critical


@dataclass
class _Outcome:
    status: Status
    body: dict[str, Any] = field(default_factory=dict)


_RANK: dict[Status, int] = {"pass": 0, "warn": 1, "fail": 2}


def worst(statuses: list[Status]) -> Status:
    """The most severe of ``statuses`` (``pass`` for none)."""
    return max(statuses, key=_RANK.__getitem__, default="pass")


class Health:
    """Readiness checks and probe state of one service."""

    def __init__(self, service: str, *, timeout: float, cache_ttl: float) -> None:
        self.service = service
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.checks: dict[str, Check] = {}
        self.startup: dict[str, StartupFunc] = {}
        self.started = False
        self.draining = False
        self._cached: tuple[float, dict[str, Any], Status] | None = None
        self._lock = asyncio.Lock()
        #: what the last /readyz answered for this service (None before the first probe)
        self.last_ready: bool | None = None
        #: times the /readyz answer changed between ready and not ready
        self.ready_changes = 0
        #: whether each check passed (or warned) at its last run
        self.check_up: dict[str, bool] = {}

    def answered(self, status: Status) -> None:
        """Record what /readyz answered: ``fail`` is not ready, ``pass`` or ``warn`` ready."""
        ready = status != "fail"
        if self.last_ready is not None and ready != self.last_ready:
            self.ready_changes += 1
        self.last_ready = ready

    def add(
        self,
        name: str,
        func: CheckFunc,
        *,
        timeout: float | None = None,
        critical: bool | Callable[[], bool] = True,
        component_type: str = "component",
        active: Callable[[], bool] | None = None,
    ) -> None:
        """Register a readiness check; a failing non-critical check only warns.

        ``active``, when given, says whether the check applies right now (a capability
        the application does not use is not listed).
        """
        self.checks[name] = Check(
            name, func, timeout or self.timeout, critical, component_type, active
        )

    def add_startup(self, name: str, func: StartupFunc) -> None:
        """Register something ``/startupz`` waits for after the service started (a consumer
        joining its group): ``func()`` returns None once it is done."""
        self.startup[name] = func

    def starting(self) -> dict[str, Any]:
        """The startup conditions not met yet, as health+json check details."""
        found: dict[str, Any] = {}
        for name, func in self.startup.items():
            result = func()
            if result is not None:
                body: dict[str, Any] = {"status": result.status, "output": result.output}
                if result.observed_value is not None:
                    body["observedValue"] = result.observed_value
                    body["observedUnit"] = result.observed_unit
                found[name] = [body]
        return found

    async def run(self) -> tuple[Status, dict[str, Any]]:
        """Run every check (or reuse a fresh cached run): overall status and details."""
        now = time.monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < self.cache_ttl:
            return cached[2], cached[1]
        async with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < self.cache_ttl:
                return cached[2], cached[1]
            checks = [c for c in self.checks.values() if c.active is None or c.active()]
            outcomes = await asyncio.gather(*(self._run_one(c) for c in checks))
            details = {c.name: [o.body] for c, o in zip(checks, outcomes, strict=True)}
            status = worst([o.status for o in outcomes])
            for c, o in zip(checks, outcomes, strict=True):
                self.check_up[c.name] = o.status != "fail"
            self._cached = (time.monotonic(), details, status)
            return status, details

    async def _run_one(self, check: Check) -> _Outcome:
        started = time.perf_counter()
        body: dict[str, Any] = {"componentType": check.component_type}
        critical = check.is_critical
        failed: Status = "fail" if critical else "warn"
        try:
            result = await asyncio.wait_for(check.func(), check.timeout)
        except TimeoutError:
            result = CheckResult(failed, f"no answer within {check.timeout:g}s")
        except Exception as exc:
            result = CheckResult(failed, f"{type(exc).__name__}: {exc}")
        result = result or CheckResult()
        if result.status == "fail" and not critical:
            result.status = "warn"
        body["status"] = result.status
        body["time"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        body["durationMs"] = round((time.perf_counter() - started) * 1000, 2)
        if result.output:
            body["output"] = result.output
        if result.observed_value is not None:
            body["observedValue"] = result.observed_value
            if result.observed_unit:
                body["observedUnit"] = result.observed_unit
        return _Outcome(result.status, body)


def health_response(
    status: Status, *, service: str, checks: dict[str, Any] | None = None, output: str | None = None
) -> Response:
    """A health+json response: 200 for pass/warn, 503 for fail."""
    body: dict[str, Any] = {"status": status, "serviceId": service}
    if output:
        body["output"] = output
    if checks is not None:
        body["checks"] = checks
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=503 if status == "fail" else 200,
        media_type=HEALTH_JSON,
    )


class ProbeEndpoints:
    """The /livez, /readyz and /startupz endpoints over one or several services' health."""

    def __init__(self, service: str, healths: list[Health]) -> None:
        self.service = service
        self.healths = healths

    async def livez(self, request: Request) -> Response:
        """Alive while the event loop runs this handler."""
        return health_response("pass", service=self.service)

    async def startupz(self, request: Request) -> Response:
        """Pass once every service finished its startup and what it waits for after
        (consumers joining their groups) is done."""
        if not all(h.started for h in self.healths):
            return health_response("fail", service=self.service, output="starting")
        waiting: dict[str, Any] = {}
        for h in self.healths:
            waiting.update(h.starting())
        if not waiting:
            return health_response("pass", service=self.service)
        status = worst([body[0]["status"] for body in waiting.values()])
        return health_response(status, service=self.service, checks=waiting, output="starting")

    async def readyz(self, request: Request) -> Response:
        """Run the readiness checks; fail while starting or draining."""
        if any(h.draining for h in self.healths):
            return self._not_ready("draining")
        if not all(h.started for h in self.healths):
            return self._not_ready("starting")
        results = await asyncio.gather(*(h.run() for h in self.healths))
        for health, (status, _) in zip(self.healths, results, strict=True):
            health.answered(status)
        checks: dict[str, Any] = {}
        for _, details in results:
            checks.update(details)
        return health_response(worst([s for s, _ in results]), service=self.service, checks=checks)

    def _not_ready(self, why: str) -> Response:
        for health in self.healths:
            health.answered("fail")
        return health_response("fail", service=self.service, output=why)


class HealthCollector(Collector):
    """Readiness as Prometheus metrics, read from a :class:`Health` at scrape time."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        """``nativekit_ready``, ``nativekit_readiness_changes_total`` and
        ``nativekit_readiness_check_up`` of the service."""
        health, service = self.health, self.health.service
        ready = GaugeMetricFamily(
            "nativekit_ready",
            "1 when the last /readyz answer was ready (pass or warn), 0 when it failed "
            "(a dependency, starting or draining).",
            labels=["service"],
        )
        if health.last_ready is not None:
            ready.add_metric([service], float(health.last_ready))
        changes = CounterMetricFamily(
            "nativekit_readiness_changes",
            "Times the /readyz answer changed between ready and not ready.",
            labels=["service"],
        )
        changes.add_metric([service], float(health.ready_changes))
        checks = GaugeMetricFamily(
            "nativekit_readiness_check_up",
            "1 when the readiness check passed or warned at its last run, 0 when it failed.",
            labels=["service", "check"],
        )
        for name, up in list(health.check_up.items()):
            checks.add_metric([service, name], float(up))
        yield from (ready, changes, checks)
