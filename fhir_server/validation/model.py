"""StructureDefinition snapshots compiled once into trees the validator walks without searching.

A snapshot is a flat, ordered list of ElementDefinitions; the validator needs, for each JSON object it
meets, "which elements may appear here, under which JSON keys, with which rules". ``compiled(url)``
builds that tree once per StructureDefinition (cached) so validating a resource is dictionary lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir_server import definitions

_SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


@dataclass(frozen=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    target_profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Constraint:
    key: str
    severity: str
    expression: str
    human: str
    source: str


@dataclass
class Slicing:
    discriminators: tuple[tuple[str, str], ...]  # (type, path)
    rules: str  # open | closed | openAtEnd
    ordered: bool


@dataclass
class Node:
    """One ElementDefinition with its children and slices resolved."""

    id: str
    path: str
    name: str  # last path segment without [x]
    min: int
    max: int | None  # None = unbounded
    is_array: bool  # JSON shape comes from the base definition's max
    types: tuple[TypeRef, ...]
    sd_url: str
    choice: bool = False
    fixed: tuple[str, Any] | None = None  # ("fixed"|"pattern", value)
    fixed_type: str | None = None
    binding: dict[str, Any] | None = None
    constraints: tuple[Constraint, ...] = ()
    slicing: Slicing | None = None
    slices: list[Node] = field(default_factory=list)
    slice_name: str | None = None
    children: dict[str, Node] = field(default_factory=dict)
    # JSON key -> (child node, type code) for every key the object may carry, choice keys expanded.
    keys: dict[str, tuple[Node, str]] = field(default_factory=dict)
    content_reference: str | None = None
    max_length: int | None = None
    min_value: tuple[str, Any] | None = None
    max_value: tuple[str, Any] | None = None
    is_modifier: bool = False
    # children (or slices) that must appear at least once: (child name, child), filled after compiling
    required: list[tuple[str, Node]] = field(default_factory=list)
    # constraints evaluated through FHIRPath (natively checked and skipped ones left out)
    checks: tuple[Constraint, ...] = ()
    # filled by the validator on first use (see validator._steps / _item_plan): per JSON key, how to walk
    # it; per type code, what an item of that type needs
    steps: dict[str, Any] | None = None
    check_plan: tuple[tuple[Constraint, Any], ...] | None = None  # (constraint, invariants.shortcut)
    item_plans: dict[str, Any] = field(default_factory=dict)
    # [tries, hits] of the validator's memo of sub-walks at this element (validator._memo_worth)
    memo_stat: list[int] = field(default_factory=lambda: [0, 0])

    def type_codes(self) -> list[str]:
        return [t.code for t in self.types]


@dataclass
class CompiledSD:
    url: str
    type: str
    kind: str
    root: Node
    by_id: dict[str, Node]
    context: list[dict[str, Any]]
    derivation: str | None


def type_key(code: str) -> str:
    """JSON suffix of a choice-type element for a type code ("dateTime" -> "DateTime")."""
    if code.startswith(_SYSTEM_PREFIX):
        code = code[len(_SYSTEM_PREFIX) :].lower()
    return code[0].upper() + code[1:]


def _max(value: str | None) -> int | None:
    if value is None or value == "*":
        return None
    return int(value)


def _node(el: dict[str, Any], sd_url: str) -> Node:
    path = el["path"]
    last = path.rsplit(".", 1)[-1]
    choice = last.endswith("[x]")
    name = last[:-3] if choice else last
    base = el.get("base") or {}
    base_max = base.get("max", el.get("max", "*"))
    types = tuple(
        TypeRef(t["code"], tuple(t.get("profile", ())), tuple(t.get("targetProfile", ())))
        for t in el.get("type", ())
    )
    fixed = None
    fixed_type = None
    min_value = max_value = None
    for k, v in el.items():
        if k.startswith("fixed"):
            fixed, fixed_type = ("fixed", v), k[5:]
        elif k.startswith("pattern"):
            fixed, fixed_type = ("pattern", v), k[7:]
        elif k.startswith("minValue"):
            min_value = (k[8:], v)
        elif k.startswith("maxValue"):
            max_value = (k[8:], v)
    slicing = None
    if "slicing" in el:
        s = el["slicing"]
        slicing = Slicing(
            tuple((d["type"], d["path"]) for d in s.get("discriminator", ())),
            s.get("rules", "open"),
            bool(s.get("ordered", False)),
        )
    constraints = tuple(
        Constraint(
            c["key"],
            c.get("severity", "error"),
            c.get("expression", ""),
            c.get("human", ""),
            c.get("source", sd_url),
        )
        for c in el.get("constraint", ())
        if c.get("expression")
    )
    return Node(
        id=el["id"],
        path=path,
        name=name,
        min=int(el.get("min", 0)),
        max=_max(el.get("max")),
        is_array=_max(base_max) != 1 if path.count(".") else False,
        types=types,
        sd_url=sd_url,
        choice=choice,
        fixed=fixed,
        fixed_type=fixed_type,
        binding=el.get("binding"),
        constraints=constraints,
        slicing=slicing,
        slice_name=el.get("sliceName"),
        content_reference=el.get("contentReference"),
        max_length=el.get("maxLength"),
        min_value=min_value,
        max_value=max_value,
        is_modifier=bool(el.get("isModifier")),
    )


def _parent_id(id_: str) -> tuple[str, str]:
    """Split an element id into (parent id, last segment); slice markers stay with their segment."""
    depth = 0
    for i in range(len(id_) - 1, -1, -1):
        ch = id_[i]
        if ch == "]":
            depth += 1
        elif ch == "[":
            depth -= 1
        elif ch == "." and depth == 0:
            return id_[:i], id_[i + 1 :]
    return "", id_


def compile_elements(
    url: str,
    type_: str,
    kind: str,
    elements: list[dict[str, Any]],
    context: list[dict[str, Any]] | None = None,
    derivation: str | None = None,
) -> CompiledSD:
    by_id: dict[str, Node] = {}
    root: Node | None = None
    for el in elements:
        node = _node(el, url)
        by_id[node.id] = node
        parent_id, last = _parent_id(node.id)
        if not parent_id:
            if ":" in last:  # a slice of the root: not meaningful
                continue
            root = node
            continue
        if ":" in last:
            base_name, _slice = last.split(":", 1)
            if "/" in _slice:  # re-slicing: validated through the parent slice only
                continue
            owner_id = f"{parent_id}.{base_name}" if parent_id else base_name
            owner = by_id.get(owner_id)
            if owner is not None:
                owner.slices.append(node)
            continue
        parent = by_id.get(parent_id)
        if parent is None:
            continue
        parent.children[node.name] = node
        if node.choice:
            for t in node.types:
                parent.keys[node.name + type_key(t.code)] = (node, t.code)
        else:
            code = node.types[0].code if node.types else ""
            parent.keys[node.name] = (node, code)
    if root is None:
        raise ValueError(f"StructureDefinition {url} has no root element")
    from fhir_server.validation.invariants import NATIVE, SKIPPED

    for node in by_id.values():
        node.checks = tuple(c for c in node.constraints if c.key not in NATIVE and c.key not in SKIPPED)
        node.required = [
            (name, child)
            for name, child in node.children.items()
            if child.min > 0 or any(s.min > 0 for s in child.slices)
        ]
    return CompiledSD(url, type_, kind, root, by_id, context or [], derivation)


def compiled_core(url: str) -> CompiledSD | None:
    """The compiled tree of an R4 core StructureDefinition only (never a shipped or runtime one)."""
    return _compiled_core(url)


@cache
def _compiled_core(url: str) -> CompiledSD | None:
    sd = definitions.structure_definition(url)
    if sd is None:
        return None
    return compile_elements(
        sd["url"], sd["type"], sd["kind"], sd["elements"], sd.get("context"), sd.get("derivation")
    )


_extra: dict[str, CompiledSD] = {}
# StructureDefinitions created over REST, replaced as a whole by ``runtime`` when the store changes
_runtime: dict[str, CompiledSD] = {}


def register(sd: dict[str, Any]) -> CompiledSD:
    """Compile one of our full StructureDefinitions (with snapshot) so ``compiled`` finds it."""
    elements = sd["snapshot"]["element"]
    c = compile_elements(sd["url"], sd["type"], sd["kind"], elements, sd.get("context"), sd.get("derivation"))
    _extra[sd["url"]] = c
    global generation
    generation += 1
    return c


def set_runtime(compiled_sds: dict[str, CompiledSD]) -> None:
    """Replace the StructureDefinitions created over REST (shipped and core ones always win)."""
    global _runtime, generation
    _runtime = dict(compiled_sds)
    generation += 1


# Bumped whenever what ``compiled`` answers may change: caches of looked-up definitions compare it.
generation = 0


def compile_sd(sd: dict[str, Any]) -> CompiledSD:
    """Compile a full StructureDefinition (with snapshot) without registering it."""
    return compile_elements(
        sd["url"], sd["type"], sd["kind"], sd["snapshot"]["element"], sd.get("context"), sd.get("derivation")
    )


def compiled(url_or_type: str) -> CompiledSD | None:
    """The compiled tree of a core, shipped or runtime StructureDefinition (None when unknown)."""
    url = url_or_type.split("|", 1)[0] if "|" in url_or_type else url_or_type
    hit = _extra.get(url)
    if hit is not None:
        return hit
    core = _compiled_core(url)
    if core is not None:
        return core
    return _runtime.get(url)


def is_primitive(code: str) -> bool:
    if code.startswith(_SYSTEM_PREFIX):
        return True
    return bool(code) and code[0].islower()
