"""docs/http-client.md's example against a fake payments service, as the page says."""

from __future__ import annotations

import httpx

from nativekit.client import RetryPolicy
from nativekit.testing import serve


async def test_the_http_client_page_example() -> None:
    """GETs are retried on a 503; a POST carries its idempotency key; no answer is a 503."""
    import docs.examples.http_client as example

    calls: list[httpx.Request] = []
    answers = [httpx.Response(503), httpx.Response(200, json={"id": "p1"})]

    def payments(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"id": "p2"})
        if request.url.path.endswith("/none"):
            return httpx.Response(404)
        if request.url.path.endswith("/down"):
            raise httpx.ConnectError("connection refused", request=request)
        return answers.pop(0) if answers else httpx.Response(200, json={"id": "p1"})

    # the page's client, pointed at the fake peer the way the page says a test does it
    example.payments.use_transport(httpx.MockTransport(payments))
    example.payments.retry = RetryPolicy(retries=2, backoff=0.001)
    async with serve(example.svc) as client:
        found = await client.get("/orders/o1/payment")
        assert found.json() == {"order_id": "o1", "payment": {"id": "p1"}}
        assert [c.method for c in calls] == ["GET", "GET"]  # the 503 was retried
        assert (await client.get("/orders/none/payment")).status_code == 404
        down = await client.get("/orders/down/payment")
        assert down.status_code == 503
        assert "payments did not answer GET" in down.json()["detail"]
        charged = await client.post("/orders/o1/charge")
        assert charged.json() == {"status": 201, "payment": {"id": "p2"}}
        assert calls[-1].headers["Idempotency-Key"] == "o1:charge"
