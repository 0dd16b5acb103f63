"""OTLP trace requests (protobuf) written straight from SDK spans.

The OTLP exporter of ``opentelemetry-exporter-otlp-proto-http`` builds a protobuf
object tree per span (one message object per attribute, per value) and then
serializes it; that costs more CPU than the request the span describes. This
module writes the same ``ExportTraceServiceRequest`` bytes directly: the resource
and scope of a batch are encoded once per batch, and each attribute's key/value
pair once per distinct pair (a bounded cache: the ``http.route`` and method of a
route, the status codes). The output parses to the message the SDK's encoder
makes (``tests/unit/telemetry/test_otlp_encode.py`` holds that); it reads spans
only through ``ReadableSpan``'s public properties.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["encode_spans"]

_PACK_FIXED64 = struct.Struct("<Q").pack
_PACK_FIXED32 = struct.Struct("<I").pack
_PACK_DOUBLE = struct.Struct("<d").pack
_HAS_IS_REMOTE = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
#: the flags field (16, fixed32) for a local and a remote parent, as the SDK encoder sets it
_FLAGS = (
    b"\x85\x01" + _PACK_FIXED32(_HAS_IS_REMOTE),
    b"\x85\x01" + _PACK_FIXED32(_HAS_IS_REMOTE | _IS_REMOTE),
)
_CACHE_LIMIT = 4096
#: (key, type, value) -> the length-prefixed KeyValue message of a plain attribute
_pairs: dict[tuple[str, type, Any], bytes] = {}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag`` is the whole key byte: field << 3 | 2)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _string(tag: int, text: str) -> bytes:
    return _field(tag, text.encode()) if text else b""


def _uint(tag: int, value: int) -> bytes:
    return bytes((tag,)) + _varint(value) if value else b""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message's bytes."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(0x0A, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _PACK_DOUBLE(value)
    if isinstance(value, bytes):
        return _field(0x3A, value)
    if isinstance(value, Sequence):
        return _field(0x2A, b"".join(_field(0x0A, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(0x32, b"".join(_field(0x0A, _pair(str(k), v)) for k, v in value.items()))
    raise TypeError(f"invalid attribute value type {type(value).__name__}: {value!r}")


def _pair(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message's bytes."""
    return _string(0x0A, key) + _field(0x12, _any_value(value))


def _attributes(tag: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a repeated ``KeyValue`` field ``tag``; pairs of plain values are
    encoded once and remembered."""
    if not attributes:
        return b""
    lead = bytes((tag,))
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str or kind is int or kind is bool or kind is float:
            found = _pairs.get((key, kind, value))
            if found is None:
                if len(_pairs) >= _CACHE_LIMIT:
                    _pairs.clear()
                pair = _pair(key, value)
                found = _pairs[(key, kind, value)] = _varint(len(pair)) + pair
            parts.append(lead + found)
        else:
            parts.append(_field(tag, _pair(key, value)))
    return b"".join(parts)


_KINDS: dict[Any, bytes] = {}  # SDK SpanKind -> the kind field (SDK kinds start at 0, OTLP's at 1)
_EMPTY_STATUS = b"\x7a\x00"  # UNSET, no description: present, as the SDK encoder writes it


def _span(span: Any) -> bytes:
    context = span.get_span_context()
    parent = span.parent
    name = span.name.encode()
    kind = span.kind
    kind_field = _KINDS.get(kind)
    if kind_field is None:
        kind_field = _KINDS[kind] = b"\x30" + _varint(kind.value + 1)
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big")
        + b"\x12\x08" + context.span_id.to_bytes(8, "big")
    ]  # fmt: skip
    trace_state = context.trace_state
    if trace_state:
        parts.append(_string(0x1A, ",".join(f"{k}={v}" for k, v in trace_state.items())))
    if parent:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if name:
        parts.append(b"\x2a" + _varint(len(name)) + name)
    parts.append(kind_field)
    start, end = span.start_time, span.end_time
    if start:
        parts.append(b"\x39" + _PACK_FIXED64(start))
    if end:
        parts.append(b"\x41" + _PACK_FIXED64(end))
    parts.append(_attributes(0x4A, span.attributes))
    if span.dropped_attributes:
        parts.append(_uint(0x50, span.dropped_attributes))
    parts.extend(_field(0x5A, _event(event)) for event in span.events)
    parts.append(_uint(0x60, span.dropped_events))
    parts.extend(_field(0x6A, _link(link)) for link in span.links)
    parts.append(_uint(0x70, span.dropped_links))
    status = span.status
    if status.description or status.status_code.value:
        body = _uint(0x18, status.status_code.value)
        if status.description:
            body = _string(0x12, status.description) + body
        parts.append(_field(0x7A, body))
    else:
        parts.append(_EMPTY_STATUS)
    parts.append(_FLAGS[bool(parent and parent.is_remote)])
    return b"".join(parts)


def _event(event: Any) -> bytes:
    timestamp = event.timestamp
    return (
        (b"\x09" + _PACK_FIXED64(timestamp) if timestamp else b"")
        + _string(0x12, event.name)
        + _attributes(0x1A, event.attributes)
        + _uint(0x20, event.dropped_attributes)
    )


def _link(link: Any) -> bytes:
    context: Any = link.context
    flags: int = _HAS_IS_REMOTE | (_IS_REMOTE if context.is_remote else 0)
    encoded: bytes = (
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big")
        + b"\x12\x08" + context.span_id.to_bytes(8, "big")
        + _attributes(0x22, link.attributes)
        + _uint(0x28, link.dropped_attributes)
        + b"\x35" + _PACK_FIXED32(flags)
    )  # fmt: skip
    return encoded


def _scope(scope: Any) -> bytes:
    if scope is None:
        return _field(0x0A, b"")
    body = (
        _string(0x0A, scope.name)
        + _string(0x12, scope.version or "")
        + _attributes(0x1A, scope.attributes)
    )
    return _field(0x0A, body)


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of ``spans`` (SDK ``ReadableSpan``\\ s),
    grouped by resource, then by instrumentation scope, in order of first appearance."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        found = groups.get(id(resource))
        if found is None:
            found = groups[id(resource)] = (resource, {})
        scopes = found[1]
        entry = scopes.get(id(scope))
        if entry is None:
            entry = scopes[id(scope)] = (scope, [])
        entry[1].append(_field(0x12, _span(span)))
    out = []
    for resource, scopes in groups.values():
        body = [_field(0x0A, _attributes(0x0A, resource.attributes))]
        for scope, encoded in scopes.values():
            scope_spans = _scope(scope) + b"".join(encoded)
            if scope is not None and scope.schema_url:
                scope_spans += _string(0x1A, scope.schema_url)
            body.append(_field(0x12, scope_spans))
        body.append(_string(0x1A, resource.schema_url or ""))
        out.append(_field(0x0A, b"".join(body)))
    return b"".join(out)
