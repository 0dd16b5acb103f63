"""Request body size limit answering 413 as problem+json."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nativekit._http.problems import problem_response
from nativekit.errors import HTTPError


class BodyLimitMiddleware:
    """Refuse bodies larger than ``limit`` bytes (0 disables the limit).

    A declared ``Content-Length`` over the limit is refused before the handler
    runs; a streamed body is counted as it is read and refused when it passes
    the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit:
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) > self.limit:
                    response = problem_response(
                        413, detail=self._detail(), instance=scope.get("path")
                    )
                    await response(scope, receive, send)
                    return
                break
        limit = self.limit
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPError(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return (
            f"The request body is larger than {self.limit} bytes (NATIVEKIT_HTTP_MAX_BODY_BYTES)."
        )
