"""Dead-letter pages: the service's dead-letter topics, their letters, and replaying them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nativekit.auth import Principal
from nativekit.errors import BackendUnavailable
from nativekit.messaging._consume.deadletters import DeadLetter
from nativekit.messaging._wire.envelope import DLQ_PREFIX

if TYPE_CHECKING:
    from nativekit._console._app import Pages

#: Most letters read from a topic to find the ones on a page or to replay.
SCAN_LIMIT = 10_000


def routes(pages: Pages) -> list[Route]:
    """The dead-letter pages."""
    return [
        Route("/dead-letters", pages.guard(lambda r, p: _topics(pages, r)), name="letters"),
        Route(
            "/dead-letters/{topic}/replay",
            pages.guard(lambda r, p: _replay(pages, r, p)),
            methods=["POST"],
            name="replay",
        ),
        Route(
            "/dead-letters/{topic}/{ref}", pages.guard(lambda r, p: _one(pages, r)), name="letter"
        ),
    ]


def dead_letter_topics(pages: Pages) -> list[str]:
    """The dead-letter topics of the service's consumers, sorted."""
    found = {t for c in pages.sources.consumers() for t in c.dead_letter_topics}
    return sorted(found)


async def _read(pages: Pages, topic: str, limit: int) -> tuple[list[DeadLetter], int]:
    records, total = await pages.sources.read_topic(topic, limit)
    return [DeadLetter(r) for r in records], total


async def _topics(pages: Pages, request: Request) -> Response:
    topics = dead_letter_topics(pages)
    topic = request.query_params.get("topic") or (topics[0] if topics else None)
    if topic is not None and topic not in topics:
        return _unknown(pages, request, topic)
    letters: list[dict[str, Any]] = []
    total, error = 0, None
    if topic is not None:
        try:
            found, total = await _read(pages, topic, pages.sources.settings.page_size)
            letters = [_row(letter) for letter in found]
        except BackendUnavailable as exc:
            error = str(exc)
    return pages.render(
        request,
        "letters.html",
        topics=topics,
        topic=topic,
        letters=letters,
        total=total,
        error=error,
        results=None,
    )


async def _one(pages: Pages, request: Request) -> Response:
    topic, ref = request.path_params["topic"], request.path_params["ref"]
    if topic not in dead_letter_topics(pages):
        return _unknown(pages, request, topic)
    letters, _ = await _read(pages, topic, SCAN_LIMIT)
    letter = next((x for x in letters if x.ref == ref), None)
    if letter is None:
        return pages.render(
            request,
            "error.html",
            status=404,
            title="No such dead letter",
            message=f"{topic} holds no dead letter at {ref!r}.",
        )
    data = letter.to_dict()
    headers = {k: v for k, v in data["headers"].items() if not k.startswith(DLQ_PREFIX)}
    value = data["value"]
    pretty = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return pages.render(
        request,
        "letter.html",
        topic=topic,
        letter=_row(letter),
        data=data,
        headers=headers,
        payload=pretty,
    )


async def _replay(pages: Pages, request: Request, principal: Principal) -> Response:
    topic = request.path_params["topic"]
    if topic not in dead_letter_topics(pages):
        return _unknown(pages, request, topic)
    refs = [str(r) for r in request.state.form.getlist("ref")]
    if not refs:
        return pages.render(
            request,
            "error.html",
            status=422,
            title="Nothing chosen",
            message="Tick the dead letters to replay first.",
        )
    letters, _ = await _read(pages, topic, SCAN_LIMIT)
    by_ref = {letter.ref: letter for letter in letters}
    results = []
    for ref in refs:
        letter = by_ref.get(ref)
        if letter is None:
            results.append({"ref": ref, "outcome": "skipped", "detail": "no such dead letter"})
            continue
        pages.audit(
            principal, "dead_letter.replay", topic=topic, ref=ref, message_id=letter.message_id
        )
        done = await pages.sources.replay(letter)
        results.append({"ref": ref, "outcome": done.outcome, "detail": done.detail})
    found, total = await _read(pages, topic, pages.sources.settings.page_size)
    return pages.render(
        request,
        "letters.html",
        topics=dead_letter_topics(pages),
        topic=topic,
        letters=[_row(x) for x in found],
        total=total,
        error=None,
        results=results,
    )


def _row(letter: DeadLetter) -> dict[str, Any]:
    data = letter.to_dict()
    return {
        "ref": letter.ref,
        "message_id": letter.message_id,
        "original": data["original"],
        "group": data["group"],
        "handler": data["handler"],
        "attempts": data["attempts"],
        "error": f"{data['error_type']}: {data['error']}" if data["error_type"] else data["error"],
        "dead_lettered_at": data["dead_lettered_at"],
    }


def _unknown(pages: Pages, request: Request, topic: str) -> Response:
    return pages.render(
        request,
        "error.html",
        status=404,
        title="Not a dead-letter topic",
        message=f"{topic!r} is not a dead-letter topic of this service's consumers.",
    )
