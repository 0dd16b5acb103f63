"""A one-route service for tests/unit/test_trace_flush_on_stop.py, served by uvicorn."""

from __future__ import annotations

import nativekit

svc = nativekit.Service("flushing")


@svc.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


app = svc.app
