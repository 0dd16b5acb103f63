"""A service whose process tunes the garbage collector for load (an opt-in)."""

import nativekit

svc = nativekit.Service("orders")


@svc.get("/orders/{order_id}")
async def get_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id}


app = svc.app
# Last, once the application is built: what exists now is frozen out of later
# collections, and the young generation is collected every 10,000 allocations.
nativekit.tune_gc()
