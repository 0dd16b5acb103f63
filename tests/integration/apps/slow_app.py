"""An app for subprocess tests: one slow endpoint, one counter endpoint."""

import asyncio

import nativekit

svc = nativekit.Service("drain-test")


@svc.get("/slow")
async def slow(seconds: float = 2.0) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@svc.get("/hit/{n}")
async def hit(n: int) -> dict[str, int]:
    return {"n": n}


app = svc.app
