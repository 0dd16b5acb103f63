"""The consumers page: each group's partitions, positions, lag, in-flight and last error,
and the service's readiness checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from nativekit._console._app import Pages


def routes(pages: Pages) -> list[Route]:
    """The consumers page."""
    return [Route("/consumers", pages.guard(lambda r, p: _page(pages, r)), name="consumers")]


async def _page(pages: Pages, request: Request) -> Response:
    status, checks = await pages.sources.readiness()
    return pages.render(
        request, "consumers.html", consumers=pages.sources.consumers(), ready=status, checks=checks
    )
