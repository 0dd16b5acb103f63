"""The operator console of docs/console.md: a service with one saga, the console on.

Run it with the console switched on and an operator token in a file::

    echo "$(openssl rand -hex 24)" > /tmp/operator-token
    NATIVEKIT_CONSOLE_ENABLED=true NATIVEKIT_AUTH_TOKEN_FILE=/tmp/operator-token \
        uvicorn docs.examples.console:svc

then open http://127.0.0.1:8000/_nativekit/console and sign in with the token.
"""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit.saga import SagaContext

# NATIVEKIT_CONSOLE_* and NATIVEKIT_AUTH_* come from the environment
svc = nativekit.Service("orders")


class Order(BaseModel):
    order_id: str
    total: float


checkout = svc.saga("checkout", input=Order)


@checkout.step()
async def reserve_stock(ctx: SagaContext[Order]) -> None: ...


@reserve_stock.compensate()
async def release_stock(ctx: SagaContext[Order]) -> None: ...


@svc.post("/orders", status_code=202)
async def place(order: Order) -> dict[str, str]:
    handle = await svc.sagas.start(checkout, order, saga_id=order.order_id)
    return {"saga_id": handle.saga_id}
