"""The R4 type model FHIRPath navigates: element names and types per type, and type inheritance.

Built once from the shipped R4 StructureDefinitions (``fhir_server.definitions``). A node's type is
``(owner, path)``: the StructureDefinition that defines it and the element path inside it, so a
backbone element (``Patient.contact``) is typed by its path and a datatype by its own definition.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server import definitions

NodeType = tuple[str, str]  # (owner type, element path)
_SYSTEM = "http://hl7.org/fhirpath/System."
INLINE = frozenset({"BackboneElement", "Element"})

# FHIR primitive -> FHIRPath System type (FHIRPath §5.1, FHIR R4 fhirpath.html#types)
SYSTEM_OF: dict[str, str] = {
    "boolean": "Boolean",
    "integer": "Integer",
    "positiveInt": "Integer",
    "unsignedInt": "Integer",
    "decimal": "Decimal",
    "date": "Date",
    "dateTime": "DateTime",
    "instant": "DateTime",
    "time": "Time",
}


@cache
def _elements(owner: str) -> dict[str, dict[str, Any]]:
    sd = definitions.structure_definition(owner)
    if sd is None:
        return {}
    return {e["path"]: e for e in sd["elements"]}


@cache
def children(node_type: NodeType) -> dict[str, tuple[bool, tuple[NodeType, ...], tuple[str, ...]]]:
    """name -> (is choice, child node types, type codes) for the elements of one node type."""
    owner, path = node_type
    elements = _elements(owner)
    prefix = path + "."
    out: dict[str, tuple[bool, tuple[NodeType, ...], tuple[str, ...]]] = {}
    for el_path, el in elements.items():
        if not el_path.startswith(prefix) or "." in el_path[len(prefix) :]:
            continue
        name = el_path[len(prefix) :]
        choice = name.endswith("[x]")
        if choice:
            name = name[:-3]
        ref = el.get("contentReference")
        if ref:
            out[name] = (False, ((owner, ref.lstrip("#")),), ("BackboneElement",))
            continue
        codes = tuple(_code(t.get("code", "")) for t in el.get("type", ()))
        types = tuple((owner, el_path) if c in INLINE else (c, c) for c in codes)
        out[name] = (choice, types, codes)
    return out


def _code(code: str) -> str:
    return code[len(_SYSTEM) :] if code.startswith(_SYSTEM) else code


@cache
def parent(type_name: str) -> str | None:
    """The base type of a FHIR type (code -> string, Age -> Quantity, Patient -> DomainResource)."""
    sd = definitions.structure_definition(type_name)
    if sd is None:
        return None
    base = sd.get("baseDefinition")
    return base.rsplit("/", 1)[-1] if isinstance(base, str) else None


def is_fhir_type(name: str) -> bool:
    return definitions.structure_definition(name) is not None


def derives(type_name: str, ancestor: str) -> bool:
    """``type_name`` is ``ancestor`` or a specialisation of it (code is a string; Patient a Resource)."""
    current: str | None = type_name
    while current is not None:
        if current == ancestor:
            return True
        current = parent(current)
    return False


def resource_node_type(resource: Any) -> NodeType | None:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if isinstance(rtype, str) and definitions.is_resource_type(rtype):
        return (rtype, rtype)
    return None


def type_name(node_type: NodeType) -> str:
    """The FHIR type name of a node type (a backbone element is a BackboneElement)."""
    owner, path = node_type
    return owner if owner == path else ("BackboneElement" if "." in path else owner)
