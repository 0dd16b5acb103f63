"""The API documents of a service or a group: what each is built from, and its routes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nativekit._http.openapi._serve import ApiDocs

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from nativekit.messaging._commands.handlers import CommandHandlers
    from nativekit.messaging._messaging import Messaging
    from nativekit.saga._run.runtime import SagaRuntime
    from nativekit.settings import Settings


@dataclass(frozen=True)
class Described:
    """What one service's documents are built from (read when they are built)."""

    name: str
    routes: Sequence[BaseRoute]
    messaging: Messaging
    commands: CommandHandlers
    sagas: SagaRuntime
    reply_topic: str


def api_docs(settings: Settings, name: str, parts: Callable[[], Sequence[Described]]) -> ApiDocs:
    """The documents (built on first use) of the services ``parts()`` returns."""
    title = settings.docs.title or name
    version = settings.docs.api_version

    def openapi() -> dict[str, Any]:
        from nativekit._http.openapi._document import build_openapi

        return build_openapi(
            [(p.name, p.routes, None) for p in parts()], title=title, version=version
        )

    def asyncapi() -> dict[str, Any]:
        from nativekit._asyncapi._document import MessagingSource, build_asyncapi

        sources = [
            MessagingSource(p.name, p.messaging, p.commands, p.sagas, p.reply_topic)
            for p in parts()
        ]
        return build_asyncapi(sources, title=title, version=version)

    return ApiDocs(settings.docs, title=title, openapi=openapi, asyncapi=asyncapi)
