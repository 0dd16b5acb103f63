"""An app for subprocess tests: one consumer of the topic named by ``TEST_TOPIC``."""

import os

from pydantic import BaseModel

import nativekit

svc = nativekit.Service("startup-test")


class Ping(BaseModel):
    """The event."""

    n: int


handled: list[int] = []


@svc.consumer(os.environ.get("TEST_TOPIC", "startup-test.pings"))
async def on_ping(event: Ping) -> None:
    handled.append(event.n)


@svc.get("/handled")
async def count() -> dict[str, int]:
    return {"handled": len(handled)}


app = svc.app
