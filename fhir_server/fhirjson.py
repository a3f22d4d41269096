"""FHIR JSON as bytes: parse for inspection, but store and serve the bytes the client sent.

Re-serialising a parsed resource would turn ``1.00`` into ``1.0`` and reorder nothing we care
about, so the write path only splices the top-level ``id`` and ``meta`` members into the original
bytes. The same member scanner serves ``_elements``/``_summary`` and pretty printing.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError

_SKIP_PLAIN = re.compile(rb'[^"\\\[\]{}]+')
_WS = re.compile(rb"[ \t\r\n]*")
_STRING_BODY = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR_END = re.compile(rb"[^,}\] \t\r\n]+")


def parse(body: bytes | str) -> Any:
    """Parse JSON, turning a syntax error into a 400 OperationOutcome."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, f"The body is not valid JSON: {exc}", code="structure") from None


def parse_exact(body: bytes) -> Any:
    """Parse JSON keeping decimals exactly as written (for edits such as PATCH that re-serialise)."""
    import json

    try:
        return json.loads(body, parse_float=lambda text: orjson.Fragment(text.encode()))
    except ValueError as exc:
        raise FhirError(400, f"The body is not valid JSON: {exc}", code="structure") from None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _skip_string(data: bytes, pos: int) -> int:
    """``pos`` is just after an opening quote; return the index after the closing quote."""
    match = _STRING_BODY.match(data, pos)
    if match is None:
        raise FhirError(400, "The body is not valid JSON: unterminated string", code="structure")
    return match.end()


def _skip_value(data: bytes, pos: int) -> int:
    """Return the index just after the JSON value starting at ``pos``."""
    first = data[pos : pos + 1]
    if first == b'"':
        return _skip_string(data, pos + 1)
    if first not in (b"{", b"["):
        match = _SCALAR_END.match(data, pos)
        return match.end() if match else pos
    depth = 0
    while True:
        plain = _SKIP_PLAIN.match(data, pos)
        if plain:
            pos = plain.end()
        char = data[pos : pos + 1]
        if char == b'"':
            pos = _skip_string(data, pos + 1)
            continue
        if char in (b"{", b"["):
            depth += 1
        elif char in (b"}", b"]"):
            depth -= 1
            if depth == 0:
                return pos + 1
        elif not char:
            raise FhirError(400, "The body is not valid JSON: unbalanced brackets", code="structure")
        pos += 1


def members(data: bytes) -> list[tuple[str, bytes]]:
    """The top-level members of a JSON object as (key, raw value bytes), in order.

    ``data`` must already be known to be a valid JSON object (it was parsed first).
    """
    out: list[tuple[str, bytes]] = []
    pos = _WS.match(data, 0).end() + 1  # type: ignore[union-attr]
    while True:
        pos = _WS.match(data, pos).end()  # type: ignore[union-attr]
        if data[pos : pos + 1] == b"}":
            return out
        key_end = _skip_string(data, pos + 1)
        key = orjson.loads(data[pos:key_end])
        pos = _WS.match(data, key_end).end() + 1  # type: ignore[union-attr]  # past ':'
        pos = _WS.match(data, pos).end()  # type: ignore[union-attr]
        value_end = _skip_value(data, pos)
        out.append((key, data[pos:value_end]))
        pos = _WS.match(data, value_end).end()  # type: ignore[union-attr]
        if data[pos : pos + 1] == b",":
            pos += 1


def build_object(parts: list[tuple[str, bytes]]) -> bytes:
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in parts) + b"}"


def with_server_fields(data: bytes, resource_type: str, id_: str, meta: dict[str, Any]) -> bytes:
    """The client's bytes with ``resourceType``, ``id`` and ``meta`` first and set by the server."""
    rest = [(k, v) for k, v in members(data) if k not in ("resourceType", "id", "meta")]
    head = [
        ("resourceType", orjson.dumps(resource_type)),
        ("id", orjson.dumps(id_)),
        ("meta", orjson.dumps(meta)),
    ]
    return build_object(head + rest)


def select(data: bytes, keep: set[str]) -> bytes:
    """Only the top-level members named in ``keep`` (for ``_elements`` and ``_summary``)."""
    return build_object([(k, v) for k, v in members(data) if k in keep])


def replace_member(data: bytes, key: str, value: Any) -> bytes:
    parts = [(k, v) for k, v in members(data) if k != key]
    parts.insert(min(2, len(parts)), (key, orjson.dumps(value)))
    return build_object(parts)


_TOKEN = re.compile(rb'\s*("(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^{}\[\]:,\s"]+)', re.DOTALL)


def pretty(data: bytes, indent: int = 2) -> bytes:
    """Indent JSON without re-parsing numbers (so ``1.00`` stays ``1.00``)."""
    out: list[bytes] = []
    level = 0
    pad = b" " * indent
    tokens = [m.group(1) for m in _TOKEN.finditer(data)]
    for i, tok in enumerate(tokens):
        if tok in (b"{", b"["):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else b""
            out.append(tok)
            if nxt not in (b"}", b"]"):
                level += 1
                out.append(b"\n" + pad * level)
        elif tok in (b"}", b"]"):
            prev = tokens[i - 1] if i else b""
            if prev not in (b"{", b"["):
                level -= 1
                out.append(b"\n" + pad * level)
            out.append(tok)
        elif tok == b",":
            out.append(b",\n" + pad * level)
        elif tok == b":":
            out.append(b": ")
        else:
            out.append(tok)
    return b"".join(out)


def array_items(data: bytes) -> list[bytes]:
    """The raw bytes of each item of a JSON array (already known to be valid)."""
    items: list[bytes] = []
    pos = _WS.match(data, 0).end() + 1  # type: ignore[union-attr]
    while True:
        pos = _WS.match(data, pos).end()  # type: ignore[union-attr]
        if data[pos : pos + 1] in (b"]", b""):
            return items
        end = _skip_value(data, pos)
        items.append(data[pos:end])
        pos = _WS.match(data, end).end()  # type: ignore[union-attr]
        if data[pos : pos + 1] == b",":
            pos += 1


def member(data: bytes, key: str) -> bytes | None:
    """The raw bytes of one top-level member, or None."""
    for name, value in members(data):
        if name == key:
            return value
    return None
