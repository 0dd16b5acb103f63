"""JSON Schemas of pydantic types, collected from every route, resolved in one pass.

Resolving every type at once (``TypeAdapter.json_schemas``) gives each model one
``components/schemas`` entry however many routes (or services) use it, and names
two different models of the same class name apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

REF_TEMPLATE = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Pending:
    """A schema to fill in once every type was collected."""

    key: int
    mode: JsonSchemaMode
    tweak: Callable[[dict[str, Any]], dict[str, Any]] | None = None


class SchemaSet:
    """Collects pydantic types; :meth:`resolve` turns a tree with :class:`Pending` leaves
    into plain JSON, and :attr:`components` holds the shared model schemas."""

    def __init__(self) -> None:
        self._adapters: list[TypeAdapter[Any]] = []
        self._index: dict[int, int] = {}
        self._modes: set[tuple[int, JsonSchemaMode]] = set()
        self._resolved: dict[tuple[int, JsonSchemaMode], dict[str, Any]] | None = None
        self.components: dict[str, Any] = {}

    def add(
        self,
        adapter: TypeAdapter[Any],
        mode: JsonSchemaMode = "validation",
        tweak: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Pending:
        """A placeholder for ``adapter``'s schema in ``mode`` (``tweak`` edits a copy)."""
        key = self._index.get(id(adapter))
        if key is None:
            key = self._index[id(adapter)] = len(self._adapters)
            self._adapters.append(adapter)
        self._modes.add((key, mode))
        return Pending(key, mode, tweak)

    def resolve(self, tree: Any) -> Any:
        """``tree`` with every :class:`Pending` replaced by its schema."""
        if self._resolved is None:
            inputs = [(key, mode, self._adapters[key]) for key, mode in sorted(self._modes)]
            resolved, defs = TypeAdapter.json_schemas(inputs, ref_template=REF_TEMPLATE)
            self._resolved = resolved
            self.components = dict(sorted(defs.get("$defs", {}).items()))
        return self._fill(tree)

    def _fill(self, tree: Any) -> Any:
        if isinstance(tree, Pending):
            if self._resolved is None:  # pragma: no cover - resolve() sets it first
                raise RuntimeError("SchemaSet._fill before resolve")
            schema = dict(self._resolved[(tree.key, tree.mode)])
            return tree.tweak(schema) if tree.tweak else schema
        if isinstance(tree, dict):
            return {k: self._fill(v) for k, v in tree.items()}
        if isinstance(tree, list):
            return [self._fill(v) for v in tree]
        return tree


def drop_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``T | None`` without the None: an absent parameter is None, a sent one never is."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [o for o in options if o != {"type": "null"}]
    if len(kept) == len(options):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(kept) == 1:
        return {**kept[0], **rest}
    return {**rest, "anyOf": kept}
