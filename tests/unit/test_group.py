"""Several services combined into one ASGI app."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nativekit import ConfigError, Service, Settings, combine
from nativekit.testing import LifespanError, serve


def three_services(events: list[str]) -> list[Service]:
    services = []
    for name in ("orders", "payments", "inventory"):
        svc = Service(name, settings=Settings(_env_file=None))

        @svc.get(f"/{name}/{{item_id}}")
        async def get(item_id: str, _name: str = name) -> dict[str, str]:
            return {"service": _name, "id": item_id}

        @svc.on_startup
        async def started(_name: str = name) -> None:
            events.append(f"start {_name}")

        @svc.on_shutdown
        async def stopped(_name: str = name) -> None:
            events.append(f"stop {_name}")

        services.append(svc)
    return services


async def test_requests_reach_the_owning_service() -> None:
    """Each path is served by its service; metrics carry that service's label."""
    events: list[str] = []
    app = combine(*three_services(events))
    async with serve(app) as client:
        assert (await client.get("/orders/1")).json() == {"service": "orders", "id": "1"}
        assert (await client.get("/inventory/7")).json() == {"service": "inventory", "id": "7"}
        assert (await client.post("/payments/1")).status_code == 405
        assert (await client.get("/nothing")).status_code == 404
        text = (await client.get("/metrics")).text
        ready = (await client.get("/readyz")).json()
    routes = {
        (s.labels["service"], s.labels["route"], s.labels["status"])
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "http_requests_total"
    }
    assert ("orders", "/orders/{item_id}", "200") in routes
    assert ("inventory", "/inventory/{item_id}", "200") in routes
    assert ("payments", "/payments/{item_id}", "405") in routes
    assert text.count("# TYPE http_requests_total counter") == 1
    assert ready["status"] == "pass"


async def test_services_start_in_order_and_stop_in_reverse() -> None:
    """Lifespan starts services in the given order and stops them in reverse."""
    events: list[str] = []
    async with serve(combine(*three_services(events))):
        assert events == ["start orders", "start payments", "start inventory"]
    assert events[3:] == ["stop inventory", "stop payments", "stop orders"]


async def test_failed_startup_stops_started_services() -> None:
    """If one service fails to start, the ones already started are stopped and startup fails."""
    events: list[str] = []
    services = three_services(events)

    @services[1].on_startup
    async def broken() -> None:
        raise RuntimeError("payments cannot reach its bank")

    with pytest.raises(LifespanError, match="payments cannot reach its bank"):
        async with serve(combine(*services)):
            pass
    assert "stop orders" in events and "stop inventory" not in events


def test_names_must_be_unique() -> None:
    """Two services with one name cannot be combined."""
    a = Service("same", settings=Settings(_env_file=None))
    b = Service("same", settings=Settings(_env_file=None))
    with pytest.raises(ConfigError, match="same name"):
        combine(a, b)
    with pytest.raises(ConfigError, match="at least one"):
        combine()


async def test_component_failure_to_start_stops_earlier_components() -> None:
    """A component failing at startup stops those started before it, in reverse order."""
    events: list[str] = []
    svc = Service("parts", settings=Settings(_env_file=None))

    class Part:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def start(self) -> None:
            if self.fail:
                raise RuntimeError(f"{self.name} failed")
            events.append(f"start {self.name}")

        async def stop(self) -> None:
            events.append(f"stop {self.name}")

    svc.add_component("a", Part("a"))
    svc.add_component("b", Part("b"))
    svc.add_component("c", Part("c", fail=True))
    with pytest.raises(RuntimeError, match="c failed"):
        async with serve(svc):
            pass
    assert events == ["start a", "start b", "stop b", "stop a"]


async def test_stop_errors_do_not_skip_other_components() -> None:
    """A component whose stop raises is logged; the others still stop."""
    events: list[str] = []
    svc = Service("stops", settings=Settings(_env_file=None))

    @svc.on_shutdown
    async def first() -> None:
        events.append("first")

    @svc.on_shutdown
    async def broken() -> None:
        raise RuntimeError("cannot close")

    async with serve(svc):
        pass
    assert events == ["first"]


async def test_a_startup_cancelled_midway_stops_the_services_already_started() -> None:
    """Cancelling the group's startup (the server stopped while a service was still
    starting) stops the services that had started, then lets the cancellation through."""
    import asyncio

    events: list[str] = []
    services = three_services(events)
    starting = asyncio.Event()

    @services[1].on_startup
    async def slow() -> None:
        starting.set()
        await asyncio.Event().wait()  # never finishes

    app = combine(*services)
    sent: list[dict[str, str]] = []

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    lifespan = asyncio.create_task(app({"type": "lifespan"}, receive, send))  # type: ignore[arg-type]
    await asyncio.wait_for(starting.wait(), 5)
    lifespan.cancel()
    await asyncio.gather(lifespan, return_exceptions=True)
    assert lifespan.cancelled()
    assert "stop orders" in events and "stop inventory" not in events
    assert not services[0].health.started
