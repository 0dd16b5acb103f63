"""Two services in one process: `uvicorn docs.examples.combined:app`."""

import nativekit

orders = nativekit.Service("orders")
payments = nativekit.Service("payments")


@orders.get("/orders/{order_id}")
async def get_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id}


@payments.get("/payments/{payment_id}")
async def get_payment(payment_id: str) -> dict[str, str]:
    return {"payment_id": payment_id}


app = nativekit.combine(orders, payments)
