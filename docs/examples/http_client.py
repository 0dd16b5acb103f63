"""Calling another service: one client per peer, made once, closed with the service."""

import nativekit
from nativekit.client import PeerError

svc = nativekit.Service("orders")
payments = svc.http_client(
    "http://payments:8000",  # a Kubernetes Service name, or PAYMENTS_URL from your settings
    peer="payments",  # the label of its metrics and the name in its errors
    timeout=2.0,  # seconds per call (connect, write, each read); a call may say otherwise
    retries=2,  # attempts after the first, for requests that are safe to repeat
)


@svc.get("/orders/{order_id}/payment")
async def order_payment(order_id: str) -> dict[str, object]:
    try:
        # a GET is idempotent: a refused connection or a 502/503/504 is tried again
        response = await payments.get(f"/payments/by-order/{order_id}", timeout=0.5)
    except PeerError as exc:  # no answer at all, or the breaker is open: the peer is named
        raise nativekit.HTTPError(503, str(exc), headers={"Retry-After": "1"}) from exc
    if response.status_code == 404:
        raise nativekit.HTTPError(404, f"order {order_id!r} has no payment")
    return {"order_id": order_id, "payment": response.json()}


@svc.post("/orders/{order_id}/charge", status_code=201)
async def charge(order_id: str) -> dict[str, object]:
    # a POST is retried only with an idempotency key: the peer then charges once
    response = await payments.post(
        "/payments", json={"order_id": order_id}, idempotency_key=f"{order_id}:charge"
    )
    return {"status": response.status_code, "payment": response.json()}
