"""A span of your own inside a request span."""

import nativekit
from nativekit._telemetry.tracing import span

svc = nativekit.Service("pricing")


@svc.get("/prices/{sku}")
async def price(sku: str) -> dict[str, object]:
    with span("pricing.rules", sku=sku) as current:
        amount = 1999
        current.set_attribute("pricing.amount", amount)
    svc.log.info("price.computed", sku=sku, amount=amount)
    return {"sku": sku, "amount": amount}


app = svc.app
