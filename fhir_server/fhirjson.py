"""FHIR JSON as bytes: parse for inspection, but store and serve the bytes the client sent.

Re-serialising a parsed resource would turn ``1.00`` into ``1.0`` and reorder nothing we care
about, so the write path only splices the top-level ``id`` and ``meta`` members into the original
bytes. The same member scanner serves ``_elements``/``_summary`` and pretty printing.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError

_BOM = b"\xef\xbb\xbf"


def without_bom(data: bytes) -> bytes:
    """The bytes without a leading UTF-8 byte order mark (RFC 8259 lets a parser ignore one)."""
    return data[3:] if data[:3] == _BOM else data


def parse(body: bytes | str) -> Any:
    """Parse JSON, turning a syntax error into a 400 OperationOutcome (a UTF-8 BOM is ignored)."""
    if isinstance(body, bytes | bytearray) and body[:3] == _BOM:
        body = body[3:]
    elif isinstance(body, str) and body[:1] == "\ufeff":
        body = body[1:]
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, f"The body is not valid JSON: {exc}", code="structure") from None


def parse_exact(body: bytes) -> Any:
    """Parse JSON keeping decimals exactly as written (for edits such as PATCH that re-serialise)."""
    try:
        return json.loads(body, parse_float=lambda text: orjson.Fragment(text.encode()))
    except ValueError as exc:
        raise FhirError(400, f"The body is not valid JSON: {exc}", code="structure") from None


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class _Members(dict[str, Any]):
    """An object as parsed by the slow duplicate finder: remembers the keys given more than once."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Members:
    obj = _Members(pairs)
    obj.repeated = [] if len(obj) == len(pairs) else _repeats([k for k, _v in pairs])
    return obj


def _repeats(keys: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for k in keys:
        if k in seen and k not in out:
            out.append(k)
        seen.add(k)
    return out


def _locate(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, _Members):
        out.extend(f"{path}.{k}" for k in value.repeated)
        for k, v in value.items():
            _locate(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _locate(v, f"{path}[{i}]", out)


_SUSPECT = re.compile(rb'"\s+:|\\u0022', re.IGNORECASE)


def duplicate_keys(data: bytes, parsed: Any) -> list[str]:
    """Where ``data`` repeats a key inside one object, as FHIRPath-like locations (empty when none).

    R4 JSON (json.html): a property appears once per object; parsers keep only the last value, so a
    repeated key silently loses data. Fast path: the number of ``":`` in the bytes equals that in the
    parsed value re-serialised (a repeated key makes the first larger); only a mismatch, or bytes that
    make the count unreliable (whitespace before a colon, escaped quotes), pay for the exact search.
    """
    data = without_bom(data)
    if data.count(b'":') == orjson.dumps(parsed).count(b'":') and not _SUSPECT.search(data):
        return []
    try:
        tree = json.loads(data, object_pairs_hook=_pairs)
    except ValueError:
        return []
    root = tree.get("resourceType") if isinstance(tree, dict) else None
    out: list[str] = []
    _locate(tree, root if isinstance(root, str) else "$", out)
    return out


_DECODER = json.JSONDecoder()
_WS_TEXT = re.compile(r"[ \t\r\n]*")


# Values starting this far from the end of a large text are walked child by child (below that, one C
# call skips them): a single C call over megabytes would hold the GIL, stalling every other request.
_ONE_CALL = 1 << 18


def _value_end(text: str, pos: int) -> int:
    """Index just after the JSON value starting at ``pos`` (the C scanner does the walking)."""
    if len(text) - pos > _ONE_CALL and text[pos : pos + 1] in ("[", "{"):
        return _container_end(text, pos)
    try:
        return _DECODER.raw_decode(text, pos)[1]
    except json.JSONDecodeError as exc:
        raise FhirError(400, f"The body is not valid JSON: {exc}", code="structure") from None


def _container_end(text: str, pos: int) -> int:
    close = "]" if text[pos] == "[" else "}"
    ws = _WS_TEXT.match
    pos = ws(text, pos + 1).end()  # type: ignore[union-attr]
    if text[pos : pos + 1] == close:
        return pos + 1
    while True:
        if close == "}":
            pos = ws(text, _value_end(text, pos)).end()  # type: ignore[union-attr]  # the key
            if text[pos : pos + 1] != ":":
                raise FhirError(400, "The body is not valid JSON: ':' expected", code="structure")
            pos = ws(text, pos + 1).end()  # type: ignore[union-attr]
        pos = ws(text, _value_end(text, pos)).end()  # type: ignore[union-attr]
        found = text[pos : pos + 1]
        if found == close:
            return pos + 1
        if found != ",":
            raise FhirError(400, f"The body is not valid JSON: ',' or '{close}' expected", code="structure")
        pos = ws(text, pos + 1).end()  # type: ignore[union-attr]


def _text_members(text: str) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    ws = _WS_TEXT.match
    pos = ws(text, 0).end() + 1  # type: ignore[union-attr]
    while True:
        pos = ws(text, pos).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] in ("}", ""):
            return out
        key, key_end = _DECODER.raw_decode(text, pos)
        pos = ws(text, key_end).end() + 1  # type: ignore[union-attr]  # past ':'
        pos = ws(text, pos).end()  # type: ignore[union-attr]
        end = _value_end(text, pos)
        out.append((key, pos, end))
        pos = ws(text, end).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] == ",":
            pos += 1


def members(data: bytes) -> list[tuple[str, bytes]]:
    """The top-level members of a JSON object as (key, raw value bytes), in order.

    ``data`` must already be known to be a valid JSON object (it was parsed first).
    """
    text = data.decode("utf-8")
    return [(key, text[start:end].encode("utf-8")) for key, start, end in _text_members(text)]


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
    text = data.decode("utf-8")
    items: list[bytes] = []
    ws = _WS_TEXT.match
    pos = ws(text, 0).end() + 1  # type: ignore[union-attr]
    while True:
        pos = ws(text, pos).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] in ("]", ""):
            return items
        end = _value_end(text, pos)
        items.append(text[pos:end].encode("utf-8"))
        pos = ws(text, end).end()  # type: ignore[union-attr]
        if text[pos : pos + 1] == ",":
            pos += 1


def member(data: bytes, key: str) -> bytes | None:
    """The raw bytes of one top-level member, or None."""
    for name, value in members(data):
        if name == key:
            return value
    return None


_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_STEPS = bytes.maketrans(b'[{]}"', b"\x01\x01\xff\xff\x00")  # +1 opens, -1 (a signed byte) closes
_BRACKETED_STRING = re.compile(rb'"[^"]*"')
_SLICE = 1 << 20


def nesting_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in ``data`` (brackets inside strings do not count).

    Every walker of parsed JSON (validation, FHIRPath, indexing, serialising) recurses, so a body
    nested thousands deep must be refused before any of them runs. This works on the bytes in C: drop
    escaped quotes and backslashes, keep only quotes and brackets, drop empty strings (most strings
    hold no bracket), drop the strings left, and take the highest running sum of +1/-1 brackets.
    """
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    reduced = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in reduced:
        reduced = _BRACKETED_STRING.sub(b"", reduced)
    steps = memoryview(reduced.translate(_STEPS)).cast("b")
    level = deepest = 0
    for start in range(0, len(steps), _SLICE):  # slices: one long C call would hold the GIL throughout
        part = steps[start : start + _SLICE]
        deepest = max(deepest, max(accumulate(part, initial=level)))
        level += sum(part)
    return deepest


def check_depth(data: bytes, limit: int) -> None:
    """400 when ``data`` nests deeper than ``limit`` (free when it holds fewer brackets than that)."""
    if data.count(b"[") + data.count(b"{") > limit and nesting_depth(data) > limit:
        raise FhirError(400, f"The JSON nests deeper than the limit of {limit} levels", code="too-costly")


def listed(value: Any) -> list[Any]:
    """The items of a JSON array member, or none when it is absent or not an array.

    Code that looks at a resource before (or while) it is validated must not trust its shape: a
    ``"contained": 5`` iterated as a list was a 500.
    """
    return value if isinstance(value, list) else []
