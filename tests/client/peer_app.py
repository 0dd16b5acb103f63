"""A peer service for the process-kill test: ``uvicorn peer_app:app``."""

import nativekit

svc = nativekit.Service(
    "inventory", settings=nativekit.Settings(_env_file=None, http={"access_log": False})
)


@svc.get("/inventory/products/{sku}")
async def product(sku: str) -> dict[str, str]:
    return {"sku": sku}


app = svc.app
