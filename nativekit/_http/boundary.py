"""Starlette's two error middlewares folded into one layer, for speed.

A Starlette app wraps every request in ``ServerErrorMiddleware`` (outermost, the
500 handler) and ``ExceptionMiddleware`` (innermost, the other handlers): two
frames, two wrapped ``send`` callables, a ``Request`` and a closure per request,
whether anything goes wrong or not. :class:`ErrorBoundary` does the same work in
one frame and builds those objects only when an exception needs them.

It answers exactly as the stock pair does: the same handler lookup (status code
first, then the exception's MRO), the same refusal once the response started, the
same 500 handler, and the exception is re-raised afterwards as Starlette does.
Only middleware known to raise nothing of its own (nativekit's body limit) may
sit between the two; any other user middleware keeps the stock stack, where an
exception it raises itself would reach the 500 handler, not the others.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException, WebSocketException
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nativekit._http.limits import BodyLimitMiddleware

_Handler = Callable[..., Any]
#: Middleware that raises nothing outside the app it wraps, so it may sit inside the fold.
FOLDABLE: tuple[type, ...] = (BodyLimitMiddleware,)


def can_fold(user_middleware: Sequence[Middleware], *, debug: bool) -> bool:
    """True when the stock error middlewares can be replaced by :class:`ErrorBoundary`."""
    return not debug and all(cast(Any, m.cls) in FOLDABLE for m in user_middleware)


class ErrorBoundary:
    """The exception handlers and the 500 handler of a Starlette app, in one layer.

    Args:
        app: the foldable user middleware around the router (or the router).
        fallback: the app's stock middleware stack, for websocket and lifespan scopes.
        handlers: the app's ``exception_handlers``.
    """

    def __init__(
        self, app: ASGIApp, *, fallback: ASGIApp, handlers: Mapping[Any, _Handler]
    ) -> None:
        self.app = app
        self.fallback = fallback
        error_handler: _Handler | None = None
        stock = ExceptionMiddleware(app)
        by_class: dict[Any, _Handler] = {
            HTTPException: stock.http_exception,
            WebSocketException: stock.websocket_exception,
        }
        by_status: dict[int, _Handler] = {}
        for key, value in handlers.items():
            if key in (500, Exception):
                error_handler = value
            elif isinstance(key, int):
                by_status[key] = value
            else:
                by_class[key] = value
        self.error_handler = error_handler
        self._server_error = ServerErrorMiddleware(app, handler=error_handler)
        self._handlers = (by_class, by_status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        scope["starlette.exception_handlers"] = self._handlers
        response_started = False

        async def sender(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            try:
                await self.app(scope, receive, sender)
            except Exception as exc:
                response = await self._handled(exc, scope, receive, send, response_started)
                if response is not None:
                    await response(scope, receive, sender)
                exc.__traceback__ = None  # reused exception instances accumulate tracebacks
        except Exception as exc:
            response = await self._unhandled(Request(scope), exc)
            if not response_started:
                await response(scope, receive, send)
            raise

    async def _handled(
        self, exc: Exception, scope: Scope, receive: Receive, send: Send, started: bool
    ) -> Response | None:
        """The response of the registered handler for ``exc``; re-raises when there is none."""
        by_class, by_status = self._handlers
        handler = by_status.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            for cls in type(exc).__mro__:
                if cls in by_class:
                    handler = by_class[cls]
                    break
            else:
                raise exc
        if started:
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        request = Request(scope, receive, send)
        result: Response | None = (
            await handler(request, exc)
            if _is_async(handler)
            else await run_in_threadpool(handler, request, exc)
        )
        return result

    async def _unhandled(self, request: Request, exc: Exception) -> Response:
        handler = self.error_handler
        if handler is None:
            return self._server_error.error_response(request, exc)
        response: Response
        if _is_async(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        return response


def _is_async(handler: Any) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__
    )
