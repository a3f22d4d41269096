"""FHIRPath Patch: a ``Parameters`` resource of ``operation`` parameters (add, insert, delete,
replace, move) whose paths are FHIRPath expressions.

Patching needs the *location* of each element, which a FHIRPath engine does not give, so paths are
walked here: member steps (with choice types such as ``value`` matching ``valueQuantity``), indexers,
``first()``, ``last()`` and ``where(criteria)``, whose criteria are evaluated by the server's FHIRPath
engine on each candidate element, typed by the R4 model (the element's type is followed along the
path). That covers the paths patches use in practice; anything else is a clear 400.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.parameters import check_parameters

_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]{1,9})\])?$")

# A location: the container (dict or list) and the key or index of the element in it.
Location = tuple[Any, Any]
# Each location found, with the R4 type of its element ("HumanName", "Patient.contact") when known.
Typed = tuple[Location, str | None]


def _bad(index: int, text: str, status: int = 400) -> FhirError:
    code = "invalid" if status == 400 else "processing"
    return FhirError(
        status,
        f"FHIRPath Patch operation {index}: {text}",
        code=code,
        expression=[f"Parameters.parameter[{index}]"],
    )


def _split(path: str) -> list[str]:
    """Split a path on top-level dots (not inside parentheses or quotes)."""
    parts: list[str] = []
    depth = 0
    quote = False
    current = ""
    for char in path:
        if char == "'" and depth >= 0:
            quote = not quote
        if not quote:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif char == "." and depth == 0:
                parts.append(current)
                current = ""
                continue
        current += char
    parts.append(current)
    return [p.strip() for p in parts]


def _value(location: Location) -> Any:
    container, key = location
    return container[key]


def _child_type(parent: str | None, name: str, key: str) -> str | None:
    from fhir_server.fhirpath import model

    if parent is None:
        return None
    owner = parent.split(".", 1)[0]
    info = model.children((owner, parent) if "." in parent else (parent, parent)).get(name)
    if info is None:
        return None
    choice, types, codes = info
    if choice:
        suffix = key[len(name) :]
        types = tuple(t for t, c in zip(types, codes, strict=True) if c[:1].upper() + c[1:] == suffix)
    if not types:
        return None
    t_owner, t_path = types[0]
    return t_owner if t_owner == t_path else t_path


def _member(locations: list[Typed], name: str) -> list[Typed]:
    out: list[Typed] = []
    for location, type_name in locations:
        node = _value(location)
        if not isinstance(node, dict):
            continue
        key = (
            name
            if name in node
            else next(
                (k for k in node if k.startswith(name) and k[len(name) : len(name) + 1].isupper()), None
            )
        )
        if key is None:
            continue
        child = node[key]
        child_type = _child_type(type_name, name, key)
        if isinstance(child, list):
            out.extend(((child, i), child_type) for i in range(len(child)))
        else:
            out.append(((node, key), child_type))
    return out


def _where(locations: list[Typed], criteria: str, index: int) -> list[Typed]:
    from fhir_server import fhirpath

    try:
        expression = fhirpath.compile(criteria)
    except fhirpath.FhirPathError as exc:
        raise _bad(index, f"cannot evaluate where({criteria}): {exc}") from None
    kept = []
    for location, type_name in locations:
        try:
            result = expression.evaluate(_value(location), type_name=type_name)
        except fhirpath.FhirPathError as exc:
            raise _bad(index, f"cannot evaluate where({criteria}): {exc}") from None
        if [fhirpath.system(r) for r in result] == [True]:
            kept.append((location, type_name))
    return kept


def _locate(resource: dict[str, Any], path: str, index: int) -> list[Location]:
    steps = _split(path)
    if not steps or steps[0] != resource.get("resourceType"):
        raise _bad(index, f"the path '{path}' must start with {resource.get('resourceType')}")
    typed: list[Typed] = [(({"root": resource}, "root"), resource.get("resourceType"))]
    for step in steps[1:]:
        if step.startswith("where(") and step.endswith(")"):
            typed = _where(typed, step[6:-1], index)
        elif step == "first()":
            typed = typed[:1]
        elif step == "last()":
            typed = typed[-1:]
        else:
            match = _STEP.match(step)
            if match is None:
                raise _bad(index, f"the path step '{step}' is not supported in a patch path")
            typed = _member(typed, match.group(1))
            if match.group(2) is not None:
                n = int(match.group(2))
                typed = typed[n : n + 1]
    return [location for location, _type in typed]


def _parts(operation: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for part in operation.get("part", []) or []:
        name = part.get("name")
        if name == "value":
            values["value"] = _part_value(part)
            continue
        for key, value in part.items():
            if key.startswith("value"):
                values[name] = value
    return values


def _part_value(part: dict[str, Any]) -> Any:
    for key, value in part.items():
        if key.startswith("value"):
            return value
    if "part" in part:
        return {sub["name"]: _part_value(sub) for sub in part["part"]}
    return None


def _one(locations: list[Location], index: int, path: str) -> Location:
    if len(locations) != 1:
        raise _bad(
            index, f"the path '{path}' must select exactly one element, it selects {len(locations)}", 422
        )
    return locations[0]


def _list_of(locations: list[Location], resource: dict[str, Any], path: str, index: int) -> list[Any]:
    if not locations:
        raise _bad(index, f"the path '{path}' selects nothing", 422)
    container = locations[0][0]
    if not isinstance(container, list) or any(loc[0] is not container for loc in locations):
        raise _bad(index, f"the path '{path}' does not select a list", 422)
    return container


def apply(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    if parameters.get("resourceType") != "Parameters":
        raise FhirError(
            400, "A FHIRPath Patch body must be a Parameters resource", expression=["resourceType"]
        )
    check_parameters(parameters)
    for i, operation in enumerate(parameters.get("parameter", [])):
        if operation.get("name") != "operation":
            raise _bad(i, "every parameter of a FHIRPath Patch must be called 'operation'")
        spec = _parts(operation)
        kind, path = spec.get("type"), spec.get("path")
        if not isinstance(path, str) or kind not in ("add", "insert", "delete", "replace", "move"):
            raise _bad(i, "each operation needs a 'type' (add|insert|delete|replace|move) and a 'path'")
        found = _locate(resource, path, i)
        if kind == "delete":
            if len(found) > 1:
                raise _bad(
                    i, f"the path '{path}' selects {len(found)} elements; delete takes at most one", 422
                )
            for container, key in found:
                del container[key]
                if isinstance(container, list) and not container:
                    _drop_empty_lists(resource)
        elif kind == "replace":
            container, key = _one(found, i, path)
            if "value" not in spec:
                raise _bad(i, "replace needs a 'value'")
            container[key] = spec["value"]
        elif kind == "add":
            container, key = _one(found, i, path)
            name = spec.get("name")
            if not isinstance(name, str) or "value" not in spec:
                raise _bad(i, "add needs a 'name' and a 'value'")
            target = container[key]
            if not isinstance(target, dict):
                raise _bad(i, f"'{path}' is not an element that can have children", 422)
            existing = target.get(name)
            if isinstance(existing, list):
                existing.append(spec["value"])
            else:
                target[name] = spec["value"]
        elif kind == "insert":
            items = _list_of(found, resource, path, i)
            position = spec.get("index")
            if not isinstance(position, int) or not 0 <= position <= len(items):
                raise _bad(i, f"insert index {position} is outside the list (0..{len(items)})", 422)
            items.insert(position, spec.get("value"))
        elif kind == "move":
            items = _list_of(found, resource, path, i)
            source, destination = spec.get("source"), spec.get("destination")
            if not all(isinstance(n, int) and 0 <= n < len(items) for n in (source, destination)):
                raise _bad(i, f"move positions {source} -> {destination} are outside the list", 422)
            items.insert(destination, items.pop(source))  # type: ignore[arg-type]
    return resource


def _drop_empty_lists(node: Any) -> None:
    """FHIR JSON never holds empty arrays; remove any a deletion left behind."""
    if isinstance(node, dict):
        for key in [k for k, v in node.items() if isinstance(v, list) and not v]:
            del node[key]
        for value in node.values():
            _drop_empty_lists(value)
    elif isinstance(node, list):
        for value in node:
            _drop_empty_lists(value)
