"""The saga methods of a service: define and register sagas."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from nativekit.saga._define.definition import Saga

if TYPE_CHECKING:
    from nativekit.saga import SagaRuntime

T = TypeVar("T")


class SagaMethods:
    """Mixed into :class:`nativekit.Service`: defining its sagas, as methods of the service."""

    sagas: SagaRuntime

    @overload
    def saga(
        self, name: str, *, deadline: float | timedelta | None = None, version: int | None = None
    ) -> Saga[Any]: ...
    @overload
    def saga(
        self,
        name: str,
        *,
        input: type[T],
        deadline: float | timedelta | None = None,
        version: int | None = None,
    ) -> Saga[T]: ...
    @overload
    def saga(
        self,
        name: str,
        *,
        input: Any,
        deadline: float | timedelta | None = None,
        version: int | None = None,
    ) -> Saga[Any]: ...
    def saga(
        self,
        name: str,
        *,
        input: Any = Any,
        deadline: float | timedelta | None = None,
        version: int | None = None,
    ) -> Saga[Any]:
        """Define a saga run by this service; add steps with ``@saga.step()``.

        ``svc.saga(name, input=Model)`` is a ``Saga[Model]``: mypy checks that its
        steps take ``SagaContext[Model]``. ``deadline`` (seconds or a ``timedelta``):
        past it, an instance stops moving forward and compensates. ``version``: see
        :class:`nativekit.saga.Saga`.
        """
        saga: Saga[Any] = Saga(name, input=input, deadline=deadline, version=version)
        self.sagas.declare(saga)
        return saga

    def add_saga(self, saga: Saga[Any], *, legacy: bool = False) -> None:
        """Register a standalone ``Saga``; ``legacy=True`` keeps an old definition only to
        finish the instances started with it. Registering several versions of one saga
        (``Saga(name, version=N)``) runs new instances on the highest."""
        self.sagas.declare(saga, legacy=legacy)
