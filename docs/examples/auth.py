"""Bearer authentication: a route per access rule, the caller handed to the handler."""

from pydantic import BaseModel

import nativekit
from nativekit.auth import Principal

# Configured by the environment (NATIVEKIT_AUTH_JWKS_URL, _AUDIENCE, _TOKEN_FILE, ...).
svc = nativekit.Service("orders")


class NewOrder(BaseModel):
    sku: str
    quantity: int = 1


@svc.get("/catalog")  # public: user routes need no token unless NATIVEKIT_AUTH_ROUTES=true
async def catalog() -> list[str]:
    return ["mug", "tee"]


@svc.get("/me")  # a Principal parameter: a valid token is required
async def me(caller: Principal) -> dict[str, object]:
    return {"subject": caller.subject, "scopes": sorted(caller.scopes)}


@svc.post("/orders", status_code=201, scopes=["orders:write"])  # 403 without the scope
async def create_order(body: NewOrder, caller: Principal) -> dict[str, object]:
    return {"sku": body.sku, "quantity": body.quantity, "placed_by": caller.subject}
