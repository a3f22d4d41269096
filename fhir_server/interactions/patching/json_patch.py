"""JSON Patch (RFC 6902) applied to a parsed resource; the document is changed in place."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError


def _fail(index: int, text: str) -> FhirError:
    return FhirError(
        422, f"JSON Patch operation {index}: {text}", code="processing", expression=[f"Patch[{index}]"]
    )


def _position(token: str) -> int | None:
    """An array index token (RFC 6901: ``0`` or ASCII digits without a leading zero), or None."""
    if _INDEX.fullmatch(token):
        return int(token)
    return None


_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")


def _pointer(path: Any, index: int) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _fail(index, f"'{path}' is not a JSON Pointer")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _container(doc: Any, tokens: list[str], index: int) -> tuple[Any, str]:
    """The parent of the target and the last token."""
    if not tokens:
        raise _fail(index, "the whole document cannot be the target")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, index)
    return node, tokens[-1]


def _child(node: Any, token: str, index: int) -> Any:
    if isinstance(node, dict):
        if token not in node:
            raise _fail(index, f"'{token}' does not exist")
        return node[token]
    if isinstance(node, list):
        position = _position(token)
        if position is None or position >= len(node):
            raise _fail(index, f"index '{token}' is outside the array")
        return node[position]
    raise _fail(index, f"cannot step into a value with '{token}'")


def _get(doc: Any, tokens: list[str], index: int) -> Any:
    node = doc
    for token in tokens:
        node = _child(node, token, index)
    return node


def _add(doc: Any, tokens: list[str], value: Any, index: int) -> None:
    parent, last = _container(doc, tokens, index)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif (position := _position(last)) is not None and position <= len(parent):
            parent.insert(position, value)
        else:
            raise _fail(index, f"index '{last}' is outside the array")
    else:
        raise _fail(index, "the target's parent is not an object or array")


def _remove(doc: Any, tokens: list[str], index: int) -> Any:
    parent, last = _container(doc, tokens, index)
    if isinstance(parent, dict):
        if last not in parent:
            raise _fail(index, f"'{last}' does not exist")
        return parent.pop(last)
    if isinstance(parent, list) and (position := _position(last)) is not None and position < len(parent):
        return parent.pop(position)
    raise _fail(index, f"'{last}' does not exist")


def apply(document: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise FhirError(400, "A JSON Patch body must be a JSON array of operations", code="structure")
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op:
            raise FhirError(400, f"JSON Patch operation {i} has no 'op'", code="structure")
        kind = op["op"]
        tokens = _pointer(op.get("path"), i)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise FhirError(400, f"JSON Patch operation {i} ({kind}) needs a 'value'", code="structure")
        if kind == "add":
            _add(document, tokens, op["value"], i)
        elif kind == "remove":
            _remove(document, tokens, i)
        elif kind == "replace":
            _get(document, tokens, i)
            parent, last = _container(document, tokens, i)
            parent[_position(last) if isinstance(parent, list) else last] = op["value"]  # _get checked it
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"), i)
            if kind == "move" and tokens[: len(source)] == source and tokens != source:
                raise _fail(i, "cannot move a value into itself")
            value = (
                _remove(document, source, i) if kind == "move" else copy.deepcopy(_get(document, source, i))
            )
            _add(document, tokens, value, i)
        elif kind == "test":
            if orjson.dumps(_get(document, tokens, i)) != orjson.dumps(op["value"]):
                raise _fail(i, f"test failed: the value at '{op['path']}' differs")
        else:
            raise FhirError(400, f"JSON Patch operation {i}: unknown op '{kind}'", code="structure")
    return document
