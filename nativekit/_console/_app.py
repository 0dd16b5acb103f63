"""The console's routes, page rendering and the guard every page goes through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from nativekit._console._session import Gate
from nativekit.auth import Principal
from nativekit.errors import BackendUnavailable
from nativekit.settings import ConsoleSettings

if TYPE_CHECKING:
    from nativekit.messaging._consume.deadletters import DeadLetter, Replay
    from nativekit.messaging._consume.status import ConsumerStatus
    from nativekit.messaging._wire.broker import Record
    from nativekit.saga._run.runtime import SagaRuntime

#: No inline script or style, nothing from elsewhere, no framing, forms post here only.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class ConsoleSources:
    """What the console reads and acts on, handed over by the service.

    Attributes:
        readiness: runs the readiness checks: overall status and details.
        read_topic: up to N records of a topic from its start, and how many it holds.
        replay: sends a dead letter back through its consumer.
    """

    service: str
    settings: ConsoleSettings
    gate: Gate
    sagas: SagaRuntime | None
    consumers: Callable[[], list[ConsumerStatus]]
    readiness: Callable[[], Awaitable[tuple[str, dict[str, Any]]]]
    read_topic: Callable[[str, int], Awaitable[tuple[list[Record], int]]]
    replay: Callable[[DeadLetter], Awaitable[Replay]]
    log: Any


Page = Callable[[Request, Principal], Awaitable[Response]]


class Pages:
    """Renders templates with the context every page needs, and guards each page."""

    def __init__(self, sources: ConsoleSources) -> None:
        self.sources = sources
        self.gate = sources.gate
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("nativekit._console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.globals["ago"] = ago

    def url(
        self, request: Request, name: str, query: dict[str, Any] | None = None, **path: Any
    ) -> str:
        """The path of console route ``name`` (under any root path), with a query string."""
        url = request.url_for(f"console:{name}", **path).path
        given = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return f"{url}?{urlencode(given)}" if given else url

    def render(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """An HTML page with the console's security headers."""
        html = self.env.get_template(template).render(
            request=request,
            service=self.sources.service,
            url=lambda name, query=None, **path: self.url(request, name, query, **path),
            csrf=self.gate.csrf_token(request),
            principal=getattr(request.state, "principal", None),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        self.gate.keep_csrf(response, request, self.cookie_path(request))
        return response

    def cookie_path(self, request: Request) -> str:
        """The console's path under the root path: cookies are sent to it only."""
        return request.url_for("console:home").path.rstrip("/") or "/"

    def see(self, url: str) -> RedirectResponse:
        """Go to ``url`` after a form (303: the browser follows with GET)."""
        return RedirectResponse(url, status_code=303, headers=_HEADERS)

    def guard(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        """``page`` for verified operators only; POSTs must carry a genuine CSRF token."""

        async def endpoint(request: Request) -> Response:
            try:
                principal = await self.gate.principal(request)
            except PermissionError as exc:
                return self.render(
                    request,
                    "error.html",
                    status=403,
                    title="Forbidden",
                    message=f"{exc}; ask for a token with it.",
                )
            except BackendUnavailable:
                return self.render(
                    request,
                    "error.html",
                    status=503,
                    title="Unavailable",
                    message="The token cannot be verified now; try again.",
                )
            if principal is None:
                response = self.render(request, "login.html", status=401, error=None)
                response.headers["WWW-Authenticate"] = f'Bearer realm="{self.sources.service}"'
                return response
            request.state.principal = principal
            if request.method == "POST":
                form = await read_form(request)
                if not self.gate.form_is_genuine(request, form):
                    return self.render(
                        request,
                        "error.html",
                        status=403,
                        title="Form refused",
                        message="The form expired or came from another site; "
                        "reload the page and try again.",
                    )
                request.state.form = form
            return await page(request, principal)

        return endpoint

    def audit(self, principal: Principal, action: str, **details: Any) -> None:
        """One log line per change an operator makes, naming who made it."""
        self.sources.log.info(
            "console.action",
            action=action,
            principal=principal.subject,
            auth=principal.method,
            **details,
        )


async def read_form(request: Request) -> ImmutableMultiDict[str, str]:
    """The console's forms are URL-encoded (no file uploads): parsed with the standard
    library, the body size bounded by the service's request limit."""
    body = (await request.body()).decode("utf-8", "replace")
    return ImmutableMultiDict(parse_qsl(body, keep_blank_values=True, max_num_fields=1000))


def ago(seconds: float) -> str:
    """``seconds`` as a short duration: ``42 s``, ``5 min``, ``3 h``, ``2 d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


async def login(pages: Pages, request: Request) -> Response:
    if request.method == "GET":
        return pages.render(request, "login.html", error=None)
    form = await read_form(request)
    if not pages.gate.form_is_genuine(request, form):
        return pages.render(request, "login.html", status=403, error="The form expired; try again.")
    token = str(form.get("token", "")).strip()
    problem = await pages.gate.check_token(token) if token else "Paste a bearer token."
    if problem is not None:
        return pages.render(request, "login.html", status=401, error=problem)
    response = pages.see(pages.url(request, "sagas"))
    pages.gate.sign_in(response, request, token, pages.cookie_path(request))
    return response


async def logout(pages: Pages, request: Request) -> Response:
    form = await read_form(request)
    if not pages.gate.form_is_genuine(request, form):
        return pages.render(
            request,
            "error.html",
            status=403,
            title="Form refused",
            message="The form expired; reload the page.",
        )
    response = pages.see(pages.url(request, "login"))
    pages.gate.sign_out(response, request, pages.cookie_path(request))
    return response


_CSS = files("nativekit._console").joinpath("static/console.css").read_bytes()


async def css(request: Request) -> Response:
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})
