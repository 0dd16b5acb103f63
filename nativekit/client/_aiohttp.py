"""An httpx transport that sends through aiohttp's connection pool.

httpx's own pool (httpcore on anyio) is slow under concurrency (encode/httpx#3215:
on the project's machines a few hundred requests/s where aiohttp serves thousands),
so a service calling peers at high rates can keep httpx's API (and the client's
retries, breaker, tracing and metrics) and let aiohttp move the bytes. Needs
``aiohttp`` (``pip install 'nativekit[aiohttp]'``).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp


def _aiohttp() -> ModuleType:
    import aiohttp  # an optional dependency: only services that choose this transport need it

    return aiohttp


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with an ``aiohttp.ClientSession`` (made on first use).

    Args:
        limit: connections the pool keeps open at most (all hosts).
        limit_per_host: connections per host (0: no limit beyond ``limit``).
        keepalive_seconds: seconds an idle connection is reused (aiohttp's default is 15,
            longer than uvicorn's 5 s idle timeout: a call could go out on a connection
            the peer is closing).
    """

    def __init__(
        self, *, limit: int = 100, limit_per_host: int = 0, keepalive_seconds: float = 2.0
    ) -> None:
        _aiohttp()  # fail here, where the transport is chosen, when aiohttp is missing
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            aiohttp = _aiohttp()
            connector = aiohttp.TCPConnector(
                limit=self.limit,
                limit_per_host=self.limit_per_host,
                keepalive_timeout=self.keepalive_seconds,
            )
            # cookies are not shared between calls to services, as httpx does not either here
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; aiohttp's errors become httpx's transport errors."""
        aiohttp = _aiohttp()
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        try:
            async with self._open().request(
                request.method,
                str(request.url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            ) as response:
                content = await response.read()
                headers = [(k, v) for k, v in response.raw_headers]
                return httpx.Response(
                    response.status,
                    headers=_without_encoding(headers),
                    content=content,
                    request=request,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except TimeoutError as exc:  # aiohttp's read timeouts subclass it too
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def _without_encoding(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """aiohttp already decompressed the body: drop the headers that describe the raw bytes."""
    drop = {b"content-encoding", b"content-length", b"transfer-encoding"}
    return [(k, v) for k, v in headers if k.lower() not in drop]
