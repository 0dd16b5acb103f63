"""The saga operator HTTP API: list, inspect, retry, compensate, abort.

Enabled with ``NATIVEKIT_SAGA_OPERATOR_API=true``. It changes saga state, so it
requires a bearer token with the operator scope (``NATIVEKIT_AUTH_*``, see
docs/auth.md) and logs every action with its caller; a service refuses to start
with it and no authentication unless ``NATIVEKIT_AUTH_INSECURE_OPERATOR_API=true``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nativekit.errors import ConfigError, HTTPError
from nativekit.saga._errors import SagaNotFound, SagaStateError
from nativekit.saga._store.model import SagaRecord, SagaStatus

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from nativekit.saga._run.runtime import SagaRuntime


class AbortRequest(BaseModel):
    """Body of an abort request."""

    reason: str = "aborted by an operator"


_NO_BODY = AbortRequest()
#: What the POST actions answer when the saga's status does not allow them.
_CONFLICT = {409: "The saga's status does not allow this action."}
#: The largest ``older_than`` (seconds, 100 years): beyond it the store's millisecond
#: arithmetic overflows (and NaN or infinity mean nothing).
_LONGEST = 100 * 365 * 86400.0


async def _answer(action: Awaitable[SagaRecord]) -> dict[str, Any]:
    try:
        record = await action
    except SagaNotFound as exc:
        raise HTTPError(404, str(exc)) from None
    except SagaStateError as exc:
        raise HTTPError(409, str(exc)) from None
    return record.to_dict()


def operator_routes(runtime: SagaRuntime, prefix: str) -> list[BaseRoute]:
    """The operator endpoints of ``runtime`` under ``prefix``."""
    from nativekit._http.openapi._declare import OperationDocs
    from nativekit._http.routing import TypedRoute
    from nativekit.auth._guard import Access

    prefix = "/" + prefix.strip("/")

    async def list_sagas(
        status: SagaStatus | None = None,
        name: str | None = None,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """List saga instances by status, name and age, a page at a time (``cursor``)."""
        if not 1 <= limit <= 1000:
            raise HTTPError(422, f"limit must be between 1 and 1000, got {limit}")
        if older_than is not None and not 0 <= older_than < _LONGEST:
            raise HTTPError(
                422, f"older_than must be seconds from 0 to {_LONGEST:g}, got {older_than}"
            )
        try:
            page = await runtime.list(
                status=status, name=name, older_than=older_than, limit=limit, cursor=cursor
            )
        except ConfigError as exc:  # a cursor that no listing returned
            raise HTTPError(422, str(exc)) from None
        return {"items": [r.to_dict() for r in page.items], "cursor": page.cursor}

    async def get_saga(saga_id: str) -> dict[str, Any]:
        """One saga instance with its steps."""
        return await _answer(runtime.get(saga_id))

    async def retry_saga(saga_id: str) -> dict[str, Any]:
        """Resume a FAILED or ABORTED saga forward, from its failed step."""
        return await _answer(runtime.retry(saga_id))

    async def compensate_saga(saga_id: str) -> dict[str, Any]:
        """Roll a saga back: cancel a RUNNING one, resume a FAILED or ABORTED one backward."""
        return await _answer(runtime.compensate(saga_id))

    async def abort_saga(saga_id: str, body: AbortRequest = _NO_BODY) -> dict[str, Any]:
        """Stop a saga where it is, with a reason; nothing runs for it afterwards."""
        return await _answer(runtime.abort(saga_id, body.reason))

    routes: list[tuple[str, str, Callable[..., Awaitable[Any]]]] = [
        ("GET", "", list_sagas),
        ("GET", "/{saga_id}", get_saga),
        ("POST", "/{saga_id}/retry", retry_saga),
        ("POST", "/{saga_id}/compensate", compensate_saga),
        ("POST", "/{saga_id}/abort", abort_saga),
    ]
    made: list[BaseRoute] = []
    for method, path, handler in routes:
        route = TypedRoute(
            prefix + path,
            handler,
            methods=[method],
            status_code=200,
            name=f"sagas.{handler.__name__}",
            access=Access(operator=True),
        )
        route.docs = OperationDocs(
            tags=("saga operator",), responses=_CONFLICT if method == "POST" else {}
        )
        made.append(route)
    return made
