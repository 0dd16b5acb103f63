"""OTLP trace requests (protobuf) written straight from SDK spans.

The OTLP exporter of ``opentelemetry-exporter-otlp-proto-http`` builds a protobuf
object tree per span (one message object per attribute, per value) and then
serializes it; that costs more CPU than the request the span describes. This
module writes the same ``ExportTraceServiceRequest`` bytes directly:

* a resource's and a scope's bytes are made once per resource and scope object;
* a plain attribute (``str``, ``int``, ``bool`` value) is written from a cache: each
  key's bytes once, and each key/value pair's whole ``KeyValue`` message once per
  distinct pair, up to :data:`_VALUES_PER_KEY` values per key (a key with more values,
  such as ``url.path``, has its other values written around the cached key);
* ids and timestamps are fixed-size fields, each group written by one ``struct`` call;
* a span's fields are joined once, then once more with the whole request.

The output parses to the message the SDK's encoder makes
(``tests/unit/test_otlp_export.py`` holds that); spans are read only through
``ReadableSpan``'s public properties.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["encode_spans"]

_PACK_FIXED64 = struct.Struct("<Q").pack
_PACK_FIXED32 = struct.Struct("<I").pack
_PACK_DOUBLE = struct.Struct("<d").pack
#: trace_id (field 1) and span_id (field 2): tag, high and low 64 bits, tag, span id
_PACK_IDS = struct.Struct(">2sQQ2sQ").pack
#: start and end time (fields 7 and 8, fixed64)
_PACK_TIMES = struct.Struct("<cQcQ").pack
_PACK_PARENT = struct.Struct(">2sQ").pack
_LOW64 = (1 << 64) - 1
_HAS_IS_REMOTE = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
#: the flags field (16, fixed32) for a local and a remote parent, as the SDK encoder sets it
_LOCAL_FLAGS = b"\x85\x01" + _PACK_FIXED32(_HAS_IS_REMOTE)
_REMOTE_FLAGS = b"\x85\x01" + _PACK_FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
_EMPTY_STATUS = b"\x7a\x00"  # UNSET, no description: present, as the SDK encoder writes it
_UNSET = StatusCode.UNSET
_SERVER, _INTERNAL = SpanKind.SERVER, SpanKind.INTERNAL
#: one-byte varints
_SMALL = [bytes((n,)) for n in range(0x80)]
_CACHE_LIMIT = 1024  # distinct keys, span names
_VALUES_PER_KEY = 256


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
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


#: key -> its ``key`` field; key -> {str value: length-prefixed KeyValue}; same for ints
_keys: dict[str, bytes] = {}
_strs: dict[str, dict[str, bytes]] = {}
_ints: dict[str, dict[int, bytes]] = {}


def _keyed(key: str, value: bytes) -> bytes:
    """The length-prefixed ``KeyValue`` of ``key`` (its field cached) and an encoded
    ``AnyValue``."""
    key_field = _keys.get(key)
    if key_field is None:
        if len(_keys) >= _CACHE_LIMIT:
            _keys.clear()
            _strs.clear()
            _ints.clear()
        key_field = _keys[key] = _string(0x0A, key)
    size = len(value)
    body = key_field + b"\x12" + _varint(size) + value
    return _varint(len(body)) + body


def _plain(key: str, value: Any) -> bytes:
    """The length-prefixed ``KeyValue`` of an attribute missing from the caches; a str or
    int value is remembered while its key has room."""
    kind = type(value)
    if kind is str:
        encoded = value.encode()
        found = _keyed(key, b"\x0a" + _varint(len(encoded)) + encoded)
        strs = _strs.setdefault(key, {})
        if len(strs) < _VALUES_PER_KEY:
            strs[value] = found
        return found
    if kind is int:
        found = _keyed(key, b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF))
        ints = _ints.setdefault(key, {})
        if len(ints) < _VALUES_PER_KEY:
            ints[value] = found
        return found
    if kind is bool:
        return _keyed(key, b"\x10\x01" if value else b"\x10\x00")
    pair = _pair(key, value)
    return _varint(len(pair)) + pair


def _attributes(parts: list[bytes], tag: bytes, attributes: Mapping[str, Any]) -> None:
    """Append each attribute as a repeated ``KeyValue`` field ``tag`` to ``parts``."""
    append = parts.append
    # by key, not .items(): an SDK span's attributes are a Mapping whose items() is a
    # generator over the same lookups (a fifth more instructions)
    for key in attributes:
        value = attributes[key]
        kind = type(value)
        found = None
        if kind is str:
            values = _strs.get(key)
            if values is not None:
                found = values.get(value)
        elif kind is int:
            numbers = _ints.get(key)
            if numbers is not None:
                found = numbers.get(value)
        append(tag)
        append(found or _plain(key, value))


def _joined(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    parts: list[bytes] = []
    if attributes:
        _attributes(parts, tag, attributes)
    return b"".join(parts)


#: span name -> its field; SpanKind -> its field (SDK kinds start at 0, OTLP's at 1)
_names: dict[str, bytes] = {}
_KINDS = {kind.value: b"\x30" + _varint(kind.value + 1) for kind in SpanKind}
_SERVER_KIND, _INTERNAL_KIND = _KINDS[_SERVER.value], _KINDS[_INTERNAL.value]


def _span(span: Any, out: list[bytes]) -> None:
    """Append span ``span`` (field 2 of ``ScopeSpans``) to ``out``: its head, then body."""
    context = span.context
    trace_id = context.trace_id
    parts = [
        _PACK_IDS(b"\x0a\x10", trace_id >> 64, trace_id & _LOW64, b"\x12\x08", context.span_id)
    ]
    append = parts.append
    trace_state = context.trace_state
    if trace_state:
        append(_string(0x1A, ",".join(f"{k}={v}" for k, v in trace_state.items())))
    parent = span.parent
    if parent is not None:
        append(_PACK_PARENT(b"\x22\x08", parent.span_id))
    name = span.name
    name_field = _names.get(name)
    if name_field is None:
        if len(_names) >= _CACHE_LIMIT:
            _names.clear()
        name_field = _names[name] = _string(0x2A, name)
    append(name_field)
    kind = span.kind
    append(
        _SERVER_KIND
        if kind is _SERVER
        else _INTERNAL_KIND
        if kind is _INTERNAL
        else _KINDS[kind.value]
    )
    start, end = span.start_time, span.end_time
    if start and end:
        append(_PACK_TIMES(b"\x39", start, b"\x41", end))
    else:
        append(
            (b"\x39" + _PACK_FIXED64(start) if start else b"")
            + (b"\x41" + _PACK_FIXED64(end) if end else b"")
        )
    attributes = span.attributes
    if attributes:
        _attributes(parts, b"\x4a", attributes)
    dropped = span.dropped_attributes
    if dropped:
        append(_uint(0x50, dropped))
    events = span.events
    if events:
        parts.extend(_field(0x5A, _event(event)) for event in events)
    dropped = span.dropped_events
    if dropped:
        append(_uint(0x60, dropped))
    links = span.links
    if links:
        parts.extend(_field(0x6A, _link(link)) for link in links)
    dropped = span.dropped_links
    if dropped:
        append(_uint(0x70, dropped))
    status = span.status
    code, description = status.status_code, status.description
    if code is _UNSET and not description:
        append(_EMPTY_STATUS)
    else:
        body = _uint(0x18, code.value)
        if description:
            body = _string(0x12, description) + body
        append(_field(0x7A, body))
    append(_REMOTE_FLAGS if parent is not None and parent.is_remote else _LOCAL_FLAGS)
    encoded = b"".join(parts)
    out.append(b"\x12" + _varint(len(encoded)))
    out.append(encoded)


def _event(event: Any) -> bytes:
    timestamp = event.timestamp
    return (
        (b"\x09" + _PACK_FIXED64(timestamp) if timestamp else b"")
        + _string(0x12, event.name)
        + _joined(b"\x1a", event.attributes)
        + _uint(0x20, event.dropped_attributes)
    )


def _link(link: Any) -> bytes:
    context: Any = link.context
    flags: int = _HAS_IS_REMOTE | (_IS_REMOTE if context.is_remote else 0)
    encoded: bytes = (
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big")
        + b"\x12\x08" + context.span_id.to_bytes(8, "big")
        + _joined(b"\x22", link.attributes)
        + _uint(0x28, link.dropped_attributes)
        + b"\x35" + _PACK_FIXED32(flags)
    )  # fmt: skip
    return encoded


def _scope(scope: Any) -> bytes:
    """The ``scope`` field of a ``ScopeSpans`` (1)."""
    if scope is None:
        return _field(0x0A, b"")
    body = (
        _string(0x0A, scope.name)
        + _string(0x12, scope.version or "")
        + _joined(b"\x1a", scope.attributes)
    )
    return _field(0x0A, body)


#: id(resource or scope) -> (it, its encoded field): made once per object
_made: dict[int, tuple[Any, bytes]] = {}


def _once(thing: Any, encode: Any) -> bytes:
    found = _made.get(id(thing))
    if found is None or found[0] is not thing:
        if len(_made) >= _CACHE_LIMIT:
            _made.clear()
        found = _made[id(thing)] = (thing, encode(thing))
    return found[1]


def _resource(resource: Any) -> bytes:
    """The ``resource`` field of a ``ResourceSpans`` (1)."""
    return _field(0x0A, _joined(b"\x0a", resource.attributes))


def _group(groups: list[tuple[Any, Any]], key: Any, make: Any) -> Any:
    """The value of ``key`` in ``groups`` (the first pair whose key is or equals it, as
    the SDK encoder's dict finds it); a new ``make()`` at the end if none."""
    for known, value in groups:
        if known is key or known == key:
            return value
    value = make()
    groups.append((key, value))
    return value


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` of ``spans`` (SDK ``ReadableSpan``\\ s),
    grouped by resource, then by instrumentation scope (equal ones together), in order of
    first appearance."""
    groups: list[tuple[Any, list[tuple[Any, list[bytes]]]]] = []
    last: tuple[Any, Any, list[bytes]] = (None, None, [])
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        if resource is not last[0] or scope is not last[1]:
            scopes = _group(groups, resource, list)
            last = (resource, scope, _group(scopes, scope, list))
        _span(span, last[2])
    out: list[bytes] = []
    for resource, scopes in groups:
        body = [_once(resource, _resource)]
        for scope, encoded in scopes:
            head = _once(scope, _scope) if scope is not None else _scope(None)
            spans_bytes = b"".join(encoded)
            tail = (
                _string(0x1A, scope.schema_url) if scope is not None and scope.schema_url else b""
            )
            size = len(head) + len(spans_bytes) + len(tail)
            body += (b"\x12", _varint(size), head, spans_bytes, tail)
        body.append(_string(0x1A, resource.schema_url or ""))
        joined = b"".join(body)
        out += (b"\x0a", _varint(len(joined)), joined)
    return b"".join(out)
