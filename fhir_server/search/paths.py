"""Compile search-parameter FHIRPath expressions into fast accessors over parsed JSON.

Most expressions are plain paths (``Patient.birthDate``, unions, ``ofType``/``as``, simple ``where``);
those become chains of dictionary lookups that know each element's FHIR type from the shipped
StructureDefinitions. Anything else goes to the server's FHIRPath engine (``fhir_server.fhirpath``, the
one invariants and FHIRPath Patch use), compiled once, with a ``resolve()`` that turns a reference
into a stub of the referenced type so ``where(resolve() is Patient)`` works.
Every accessor returns ``(value, fhir_type)`` pairs; the type is None when it cannot be known statically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_server import definitions

Item = tuple[Any, str | None]
Accessor = Callable[[dict[str, Any], list[Item]], list[Item]]
Context = tuple[str, str]  # (StructureDefinition name, element path inside it)

_SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}
_INHERIT = {"BackboneElement", "Element"}


class _Unsupported(Exception):
    """The expression needs the full FHIRPath engine."""


@cache
def _elements(sd_name: str) -> dict[str, dict[str, Any]]:
    sd = definitions.structure_definition(sd_name)
    if sd is None:
        return {}
    return {e["path"]: e for e in sd.get("elements", [])}


def _type_codes(element: dict[str, Any]) -> list[str]:
    return [_SYSTEM_TYPES.get(t["code"], t["code"]) for t in element.get("type", [])]


def _choice_key(name: str, type_code: str) -> str:
    return name + type_code[0].upper() + type_code[1:]


# --- tokenising ------------------------------------------------------------------------------------


def split_union(expression: str) -> list[str]:
    """Split on top-level ``|`` (outside parentheses and quotes)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


_AS_GROUP = re.compile(r"^\((?P<inner>[^()|]+?)\s+as\s+(?P<type>[A-Za-z]+)\)(?P<rest>(\.[A-Za-z]+)*)$")
_STEP = re.compile(
    r"\.(?:(?P<field>[A-Za-z][A-Za-z0-9_]*)(?![A-Za-z0-9_(])"
    r"|where\(resolve\(\)\s+is\s+(?P<resolve>[A-Za-z]+)\)"
    r"|where\((?P<wfield>[A-Za-z]+)\s*=\s*'(?P<wvalue>[^']*)'\)"
    r"|where\((?P<cfield>[A-Za-z]+)\.coding\.exists\(system\s*=\s*'(?P<csystem>[^']*)'\s+and\s+"
    r"code\s*=\s*'(?P<ccode>[^']*)'\)\)"
    r"|(?:ofType|as)\((?P<oftype>[A-Za-z]+)\)"
    r"|extension\('(?P<ext>[^']+)'\))"
)


def _steps(path: str) -> list[tuple[str, ...]]:
    """Parse ``.a.b.where(...)`` into steps; raise _Unsupported for anything else."""
    steps: list[tuple[str, ...]] = []
    pos = 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if not m:
            raise _Unsupported(path)
        if m["field"]:
            steps.append(("field", m["field"]))
        elif m["resolve"]:
            steps.append(("resolve", m["resolve"]))
        elif m["wfield"]:
            steps.append(("where", m["wfield"], m["wvalue"]))
        elif m["cfield"]:
            steps.append(("where-coded", m["cfield"], m["csystem"], m["ccode"]))
        elif m["oftype"]:
            steps.append(("oftype", m["oftype"]))
        else:
            steps.append(("ext", m["ext"]))
        pos = m.end()
    return steps


def _normalise_alternative(alt: str) -> str:
    """Rewrite ``(X as T).rest`` into ``X.ofType(T).rest``."""
    m = _AS_GROUP.match(alt)
    if m:
        return f"{m['inner'].strip()}.ofType({m['type']}){m['rest']}"
    if alt.startswith("(") and alt.endswith(")") and alt.count("(") == 1:
        return alt[1:-1]
    return alt


# --- compiling -------------------------------------------------------------------------------------


def _ref_type(ref: Any, root: dict[str, Any]) -> str | None:
    if not isinstance(ref, dict):
        return None
    text = ref.get("reference")
    if not isinstance(text, str):
        return ref.get("type")
    if text.startswith("#"):
        for contained in root.get("contained", []) or []:
            if contained.get("id") == text[1:]:
                return contained.get("resourceType")
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 else None


reference_type = _ref_type  # the type a Reference points at, as ``where(resolve() is T)`` sees it


def _compile_steps(steps: list[tuple[str, ...]], ctx: Context | None) -> Accessor:
    """Build the accessor; ``ctx`` None means 'type unknown from here on' (values keep None types)."""
    funcs: list[Callable[[dict[str, Any], list[Item]], list[Item]]] = []
    pending_choice: list[str] | None = None  # allowed types of a choice element just reached
    for step in steps:
        kind = step[0]
        if kind == "field":
            name = step[1]
            if ctx is None:
                raise _Unsupported(name)
            sd_name, path = ctx
            elems = _elements(sd_name)
            element = elems.get(f"{path}.{name}")
            choice = element is None
            if choice:
                element = elems.get(f"{path}.{name}[x]")
            if element is None:
                raise _Unsupported(name)
            if element.get("contentReference"):
                ref_path = element["contentReference"].lstrip("#")
                types, next_ctx = ["BackboneElement"], (sd_name, ref_path)
            else:
                types = _type_codes(element)
                next_ctx = None
                if len(types) == 1 and not choice:
                    t = types[0]
                    next_ctx = (sd_name, f"{path}.{name}") if t in _INHERIT else (t, t)
            if choice:
                pending_choice = types
                funcs.append(_choice_step(name, types))
                ctx = None
            else:
                pending_choice = None
                funcs.append(_field_step(name, types[0] if len(types) == 1 else None))
                ctx = next_ctx
        elif kind == "oftype":
            wanted = step[1]
            if pending_choice is not None:
                pending_choice = None
            funcs.append(_oftype_step(wanted))
            ctx = (wanted, wanted) if wanted[0].isupper() else None
        elif kind == "resolve":
            funcs.append(_resolve_step(step[1]))
        elif kind == "where":
            funcs.append(_where_step(step[1], step[2]))
        elif kind == "where-coded":
            funcs.append(_where_coded_step(step[1], step[2], step[3]))
        elif kind == "ext":
            funcs.append(_ext_step(step[1]))
            ctx = ("Extension", "Extension")
            pending_choice = None
    if pending_choice is not None:
        pass  # values keep the concrete type found in the JSON key

    def run(root: dict[str, Any], items: list[Item]) -> list[Item]:
        for f in funcs:
            if not items:
                return items
            items = f(root, items)
        return items

    return run


def _each(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _field_step(name: str, type_code: str | None) -> Accessor:
    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for obj, _ in items:
            if isinstance(obj, dict):
                v = obj.get(name)
                if v is not None:
                    out.extend((x, type_code) for x in _each(v) if x is not None)
        return out

    return step


def _choice_step(name: str, types: list[str]) -> Accessor:
    keys = [(_choice_key(name, t), t) for t in types]

    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for obj, _ in items:
            if isinstance(obj, dict):
                for key, t in keys:
                    v = obj.get(key)
                    if v is not None:
                        out.extend((x, t) for x in _each(v) if x is not None)
        return out

    return step


_QUANTITY_LIKE = {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"}


def _oftype_step(wanted: str) -> Accessor:
    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for v, t in items:
            if t == wanted or (wanted == "Quantity" and t in _QUANTITY_LIKE):
                out.append((v, wanted if t is None else t))
            elif t is None and guess_type(v) == wanted:
                out.append((v, wanted))
        return out

    return step


def _resolve_step(wanted: str) -> Accessor:
    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        return [(v, t) for v, t in items if _ref_type(v, root) == wanted]

    return step


def _where_step(field: str, value: str) -> Accessor:
    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        return [(v, t) for v, t in items if isinstance(v, dict) and v.get(field) == value]

    return step


def _where_coded_step(field: str, system: str, code: str) -> Accessor:
    """``where(code.coding.exists(system = 'S' and code = 'C'))``: items whose concept has that coding
    (an Observation of one LOINC code, say), so a parameter on one kind of Observation stays compiled."""

    def has_coding(concept: Any) -> bool:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        return isinstance(codings, list) and any(
            isinstance(c, dict) and c.get("system") == system and c.get("code") == code for c in codings
        )

    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        return [(v, t) for v, t in items if isinstance(v, dict) and any(map(has_coding, _each(v.get(field))))]

    return step


def _ext_step(url: str) -> Accessor:
    def step(root: dict[str, Any], items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for obj, _ in items:
            if isinstance(obj, dict):
                out.extend((e, "Extension") for e in obj.get("extension", []) or [] if e.get("url") == url)
        return out

    return step


# --- FHIRPath fallback ------------------------------------------------------------------------------


def _stub_resolver(reference: str) -> dict[str, Any] | None:
    """``resolve()`` while indexing: the referenced resource's type only (``where(resolve() is Patient)``)."""
    target = _ref_type({"reference": reference}, {})
    return {"resourceType": target} if target else None


@cache
def _fhirpath(expression: str) -> Callable[..., list[Any]]:
    """The server's FHIRPath engine (``fhir_server.fhirpath``) on a resource; ValueError when invalid."""
    from fhir_server import fhirpath

    try:
        compiled = fhirpath.compile(expression)
    except fhirpath.FhirPathError as exc:
        raise ValueError(f"invalid FHIRPath expression {expression!r}: {exc}") from exc

    def run(resource: Any) -> list[Any]:
        return compiled.evaluate(resource, resolver=_stub_resolver)

    return run


def _convert_fhirpath_value(v: Any) -> tuple[Any, str | None]:
    """(JSON value, FHIR type) of a result: nodes keep their type; System values become JSON."""
    from decimal import Decimal

    from fhir_server import fhirpath

    if isinstance(v, fhirpath.Node):
        return v.value, v.type_name
    if isinstance(v, Decimal):
        return float(v), "decimal"
    if isinstance(v, bool):
        return v, "boolean"
    if isinstance(v, int):
        return v, "integer"
    if isinstance(v, fhirpath.Temporal):
        return str(v), {"Date": "date", "DateTime": "dateTime", "Time": "time"}[v.kind]
    if isinstance(v, fhirpath.Quantity):
        return {"value": float(v.value), "code": v.unit, "system": "http://unitsofmeasure.org"}, "Quantity"
    if isinstance(v, str):
        return v, "string"
    return str(v), None


def _fhirpath_accessor(expression: str) -> Accessor:
    fn = _fhirpath(expression)

    def run(root: dict[str, Any], items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for obj, _ in items:
            try:
                values = fn(obj)
            except Exception:  # a data-dependent evaluation failure indexes nothing, never fails a write
                continue
            for v in values or []:
                out.append(_convert_fhirpath_value(v))
        return out

    return run


# --- public ----------------------------------------------------------------------------------------


@cache
def compile_expression(resource_type: str, expression: str) -> Accessor:
    """Accessor for the part of ``expression`` that applies to ``resource_type`` (root items)."""
    alternatives: list[Accessor] = []
    fallback: list[str] = []
    for alt in split_union(expression):
        alt = _normalise_alternative(alt)
        head = re.match(r"^([A-Za-z]+)", alt)
        if not head:
            fallback.append(alt)
            continue
        name = head.group(1)
        if name not in (resource_type, "Resource", "DomainResource"):
            if name[0].isupper() and (alt[len(name) :][:1] in (".", "")):
                continue  # an alternative for another base type
            fallback.append(alt)
            continue
        try:
            alternatives.append(_compile_steps(_steps(alt[len(name) :]), (resource_type, resource_type)))
        except _Unsupported:
            fallback.append(alt)
    if fallback:
        alternatives.append(_fhirpath_accessor(" | ".join(f"({a})" for a in fallback)))
    return _union(alternatives)


@cache
def compile_relative(ctx: Context | None, expression: str) -> Accessor:
    """Accessor for a composite component's expression, evaluated on one item of the composite."""
    alternatives: list[Accessor] = []
    for alt in split_union(expression):
        alt = _normalise_alternative(alt)
        try:
            alternatives.append(_compile_steps(_steps("." + alt), ctx))
        except _Unsupported:
            alternatives.append(_fhirpath_accessor(alt))
    return _union(alternatives)


@cache
def context_of(resource_type: str, expression: str) -> Context | None:
    """The static element context a plain path ends at (for composite components)."""
    alts = split_union(expression)
    if len(alts) != 1:
        return None
    alt = _normalise_alternative(alts[0])
    if alt == resource_type:
        return (resource_type, resource_type)
    if not alt.startswith(resource_type + "."):
        return None
    ctx: Context | None = (resource_type, resource_type)
    for step in _steps(alt[len(resource_type) :]):
        if step[0] != "field" or ctx is None:
            return None if step[0] not in ("where", "where-coded") else ctx
        elems = _elements(ctx[0])
        element = elems.get(f"{ctx[1]}.{step[1]}")
        if element is None:
            return None
        if element.get("contentReference"):
            ctx = (ctx[0], element["contentReference"].lstrip("#"))
            continue
        types = _type_codes(element)
        if len(types) != 1:
            return None
        ctx = (ctx[0], f"{ctx[1]}.{step[1]}") if types[0] in _INHERIT else (types[0], types[0])
    return ctx


def _union(alternatives: list[Accessor]) -> Accessor:
    if len(alternatives) == 1:
        return alternatives[0]

    def run(root: dict[str, Any], items: list[Item]) -> list[Item]:
        out: list[Item] = []
        for a in alternatives:
            out.extend(a(root, items))
        return out

    return run


_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def guess_type(v: Any) -> str | None:
    """The FHIR type of a value whose type the path could not tell (FHIRPath results)."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "decimal"
    if isinstance(v, str):
        return "string"
    if not isinstance(v, dict):
        return None
    if "coding" in v or (set(v) <= {"text", "id", "extension"} and "text" in v):
        return "CodeableConcept"
    if "reference" in v or ("identifier" in v and "value" not in v) or ("display" in v and "code" not in v):
        return "Reference"
    if "start" in v or "end" in v:
        return "Period"
    if "low" in v or "high" in v:
        return "Range"
    if "event" in v or "repeat" in v:
        return "Timing"
    if "family" in v or "given" in v:
        return "HumanName"
    if any(k in v for k in ("line", "city", "postalCode", "country", "state", "district")):
        return "Address"
    if "value" in v and "currency" in v:
        return "Money"
    quantity_keys = "unit" in v or "code" in v or "comparator" in v or set(v) <= {"value", "system"}
    if "value" in v and quantity_keys and not isinstance(v.get("value"), str):
        return "Quantity"
    if "value" in v:
        return "ContactPoint" if v.get("system") in _CONTACT_SYSTEMS and "type" not in v else "Identifier"
    if "code" in v or "system" in v:
        return "Coding"
    if "url" in v and "contentType" in v:
        return "Attachment"
    return None


# --- implicit code systems -------------------------------------------------------------------------


def _bound_system(element: dict[str, Any]) -> str | None:
    """The one code system of a ``code`` element's bound value set, or None when not unambiguous."""
    url = (element.get("binding") or {}).get("valueSet")
    if not isinstance(url, str):
        return None
    vs = definitions.value_set(url.split("|", 1)[0])
    includes = ((vs or {}).get("compose") or {}).get("include") or []
    systems = {inc.get("system") for inc in includes}
    if len(systems) != 1 or None in systems:
        return None
    return systems.pop()


def _final_element(resource_type: str, alt: str) -> dict[str, Any] | None:
    """The element definition a plain path (fields, ``where``) ends at; None when it cannot be known."""
    if not alt.startswith(resource_type + "."):
        return None
    try:
        steps = _steps(alt[len(resource_type) :])
    except _Unsupported:
        return None
    ctx: Context = (resource_type, resource_type)
    element: dict[str, Any] | None = None
    choice = False
    for step in steps:
        if step[0] in ("where", "where-coded"):
            continue
        if step[0] == "oftype" and choice and element is not None:
            # a choice narrowed to one type: keep the choice element's binding, take the type
            element = {**element, "type": [{"code": step[1]}]}
            ctx, choice = (step[1], step[1]), False
            continue
        if step[0] != "field" or choice:
            return None
        elems = _elements(ctx[0])
        element = elems.get(f"{ctx[1]}.{step[1]}")
        if element is None:
            element = elems.get(f"{ctx[1]}.{step[1]}[x]")
            if element is None:
                return None
            choice = True
            continue
        if element.get("contentReference"):
            ctx = (ctx[0], element["contentReference"].lstrip("#"))
            continue
        types = _type_codes(element)
        if len(types) != 1:
            return None
        ctx = (ctx[0], f"{ctx[1]}.{step[1]}") if types[0] in _INHERIT else (types[0], types[0])
    return None if choice else element


@cache
def implied_code_systems(resource_type: str, expression: str) -> frozenset[str | None]:
    """Code systems implied for the ``code``-typed elements ``expression`` reaches on ``resource_type``.

    A ``code`` element carries no system in the instance: FHIR defines its namespace through the
    element's (required) binding. The set holds that system for each such element whose bound value
    set draws on exactly one code system, and None for a ``code`` element whose system cannot be
    known (unbound, several systems, or a path we cannot follow statically). Empty: no ``code``
    elements, so index rows without a system really have none.
    """
    out: set[str | None] = set()
    for alt in split_union(expression):
        alt = _normalise_alternative(alt)
        head = re.match(r"^([A-Za-z]+)", alt)
        if head and head.group(1) in ("Resource", "DomainResource"):
            alt = resource_type + alt[head.end() :]
        elif not head or head.group(1) != resource_type:
            if head and head.group(1)[0].isupper():
                continue  # an alternative for another base type
            out.add(None)  # something we cannot follow statically: cannot rule out code elements
            continue
        element = _final_element(resource_type, alt)
        if element is None:
            out.add(None)
        elif _type_codes(element) == ["code"]:
            out.add(_bound_system(element))
    return frozenset(out)
