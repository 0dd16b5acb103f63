"""Saga pages: the list with counts per status, one saga's timeline, and the actions."""

from __future__ import annotations

import copy
import json
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nativekit.auth import Principal
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.saga._errors import SagaNotFound, SagaStateError
from nativekit.saga._operator.admin import ABORTABLE, COMPENSABLE, RETRYABLE, retry_change
from nativekit.saga._store.model import SagaRecord, SagaStatus, StepRecord

if TYPE_CHECKING:
    from nativekit._console._app import Pages
    from nativekit.saga._run.runtime import SagaRuntime

#: What each action does, shown on its confirmation page.
ACTIONS = {
    "retry": "Resume the saga forward from its failed step, with a fresh retry policy.",
    "compensate": "Roll the saga back: undo its completed steps in reverse order.",
    "abort": "Stop the saga where it is. Nothing runs for it afterwards, not even compensation.",
}


def routes(pages: Pages) -> list[Route]:
    """The saga pages."""
    return [
        Route("/sagas", pages.guard(lambda r, p: _list(pages, r)), name="sagas"),
        Route("/sagas/{saga_id}", pages.guard(lambda r, p: _detail(pages, r)), name="saga"),
        Route(
            "/sagas/{saga_id}/{action}",
            pages.guard(lambda r, p: _action(pages, r, p)),
            methods=["GET", "POST"],
            name="act",
        ),
    ]


def _runtime(pages: Pages) -> SagaRuntime | None:
    return pages.sources.sagas


async def _list(pages: Pages, request: Request) -> Response:
    runtime = _runtime(pages)
    if runtime is None:
        return pages.render(
            request,
            "sagas.html",
            enabled=False,
            counts={},
            page=None,
            filters={},
            names=[],
            statuses=[],
            error=None,
        )
    query = request.query_params
    wanted = (query.get("id") or "").strip()
    if wanted:
        return pages.see(pages.url(request, "saga", saga_id=wanted))
    filters = {k: query.get(k) or None for k in ("name", "status", "older_than", "cursor")}
    error = None
    page = None
    status = None
    try:
        status = SagaStatus(filters["status"]) if filters["status"] else None
        older = float(filters["older_than"]) * 60 if filters["older_than"] else None
        if older is not None and not 0 <= older < 1e9:
            raise ValueError("older than must be a number of minutes")
        page = await runtime.list(
            status=status,
            name=filters["name"],
            older_than=older,
            limit=pages.sources.settings.page_size,
            cursor=filters["cursor"],
        )
    except (ValueError, ConfigError) as exc:
        error = str(exc)
    counts = await runtime.store.counts(sorted(runtime.sagas))
    totals: dict[str, int] = {}
    for (_, each), count in counts.items():
        totals[each.value] = totals.get(each.value, 0) + count
    return pages.render(
        request,
        "sagas.html",
        status=422 if error else 200,
        enabled=True,
        counts=totals,
        page=page,
        filters=filters,
        names=sorted(runtime.sagas),
        statuses=[s.value for s in SagaStatus],
        error=error,
        now=time.time(),
    )


async def _detail(pages: Pages, request: Request) -> Response:
    runtime = _runtime(pages)
    saga_id = request.path_params["saga_id"]
    if runtime is None:
        return _missing(pages, request, saga_id)
    try:
        record = await runtime.get(saga_id)
    except SagaNotFound:
        return _missing(pages, request, saga_id)
    trace = pages.sources.settings.trace_url
    return pages.render(
        request,
        "saga.html",
        saga=record,
        input=_pretty(record.input),
        timeline=timeline(record),
        results={k: _pretty(v) for k, v in record.results.items()},
        actions=available(record),
        trace_url=trace.format(trace_id=record.trace_id) if trace and record.trace_id else None,
        done=request.query_params.get("done"),
        now=time.time(),
    )


async def _action(pages: Pages, request: Request, principal: Principal) -> Response:
    runtime = _runtime(pages)
    saga_id, action = request.path_params["saga_id"], request.path_params["action"]
    if action not in ACTIONS:
        return pages.render(
            request,
            "error.html",
            status=404,
            title="No such action",
            message=f"{action!r} is not an action; use one of {', '.join(ACTIONS)}.",
        )
    if runtime is None:
        return _missing(pages, request, saga_id)
    if request.method == "GET":
        try:
            record = await runtime.get(saga_id)
        except SagaNotFound:
            return _missing(pages, request, saga_id)
        return pages.render(
            request, "confirm.html", saga=record, action=action, explain=ACTIONS[action]
        )
    pages.audit(principal, f"saga.{action}", saga_id=saga_id)
    try:
        if action == "retry":
            await runtime.retry(saga_id)
        elif action == "compensate":
            await runtime.compensate(saga_id)
        else:
            reason = str(request.state.form.get("reason") or "") or "aborted by an operator"
            await runtime.abort(saga_id, f"{reason} ({principal.subject})")
    except SagaNotFound:
        return _missing(pages, request, saga_id)
    except SagaStateError as exc:
        return pages.render(
            request, "error.html", status=409, title="Not possible now", message=str(exc)
        )
    except BackendUnavailable as exc:
        return pages.render(
            request, "error.html", status=503, title="Store unavailable", message=str(exc)
        )
    return pages.see(pages.url(request, "saga", {"done": action}, saga_id=saga_id))


def _missing(pages: Pages, request: Request, saga_id: str) -> Response:
    return pages.render(
        request,
        "error.html",
        status=404,
        title="No such saga",
        message=f"No saga instance has the id {saga_id!r}.",
    )


def available(record: SagaRecord) -> list[str]:
    """The actions the saga's status allows (the operator API's rules)."""
    allowed = {"retry": RETRYABLE, "compensate": COMPENSABLE, "abort": ABORTABLE}
    found = [action for action, statuses in allowed.items() if record.status in statuses]
    if "retry" in found:
        try:
            retry_change(copy.deepcopy(record))
        except SagaStateError:  # compensations ran: it can only finish rolling back
            found.remove("retry")
    return found


def timeline(record: SagaRecord) -> list[dict[str, Any]]:
    """Each step in order with its attempts, times and errors, then its compensation."""
    rows = []
    # ``order`` lists the steps in the order they completed; then the ones that did not
    names = [*record.order, *(n for n in record.steps if n not in record.order)]
    for name in names:
        step = record.steps.get(name) or StepRecord()
        rows.append(
            {
                "step": name,
                "status": step.status.value,
                "attempts": step.attempts,
                "started": step.started_at,
                "ended": step.ended_at,
                "took": _took(step.started_at, step.ended_at),
                "error": step.error,
                "interruptions": step.interruptions,
                "uncertain": step.uncertain,
                "compensation_attempts": step.compensation_attempts,
                "compensation_started": step.compensation_started_at,
                "compensation_ended": step.compensation_ended_at,
                "compensation_took": _took(
                    step.compensation_started_at, step.compensation_ended_at
                ),
            }
        )
    return rows


def _took(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


def _pretty(raw: str) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return raw
