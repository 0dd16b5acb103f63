"""A one-route service, alone and in a group, served by uvicorn for
tests/unit/test_trace_flush_on_stop.py."""

from __future__ import annotations

import nativekit

svc = nativekit.Service("flushing")


@svc.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


app = svc.app

other = nativekit.Service("flushing-other")
#: the same route served by a group of services (``nativekit.combine``)
group = nativekit.combine(svc, other)
