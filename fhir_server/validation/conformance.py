"""Semantic rules of conformance resources that their StructureDefinitions state in prose.

* SearchParameter (search.html, searchparameter.html): the expression is valid FHIRPath; a plain path
  (``Base.a.b``, with ``as``/``ofType``) names elements that exist on each base, and ends in a datatype
  the parameter's ``type`` can search (a ``date`` parameter on a string is unusable); a composite has
  components.
* CodeSystem (codesystem.html): a concept's property names a declared property and carries the value
  type that property declares; property codes are unique; ``count``, when the content is complete,
  is the number of concepts.
* CapabilityStatement (capabilitystatement.html): one ``rest`` per mode; a search parameter whose
  definition this server knows has that definition's type; a profile named for a resource is a
  profile of that resource type.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fhir_server import definitions, fhirjson

Issue = dict[str, Any]

_QUANTITY = frozenset({"Quantity", "SimpleQuantity", "Age", "Duration", "Count", "Distance", "MoneyQuantity"})
# search.html: the datatypes each kind of parameter can search
SEARCHABLE: dict[str, frozenset[str]] = {
    "number": frozenset({"integer", "decimal", "positiveInt", "unsignedInt", "Quantity", "Range"}),
    "date": frozenset({"date", "dateTime", "instant", "Period", "Timing"}),
    "string": frozenset({"string", "markdown", "HumanName", "Address", "uri", "url", "canonical"}),
    "token": frozenset(
        {"boolean", "code", "Coding", "CodeableConcept", "Identifier", "ContactPoint", "string", "uri", "url",
         "canonical", "id", "oid", "uuid", "Quantity"}
    ),
    "reference": frozenset({"Reference", "canonical", "uri", "url", "Resource"}),
    "quantity": _QUANTITY | frozenset({"Money", "Range", "SampledData"}),
    "uri": frozenset({"uri", "url", "canonical", "oid", "uuid"}),
}  # fmt: skip
_PROPERTY_VALUE = {
    "code": "valueCode",
    "Coding": "valueCoding",
    "string": "valueString",
    "integer": "valueInteger",
    "boolean": "valueBoolean",
    "dateTime": "valueDateTime",
    "decimal": "valueDecimal",
}
_PLAIN = re.compile(r"^\(?\s*([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)+)(?:\s+as\s+([A-Za-z]+))?\s*\)?$")
_FUNCTION_TYPE = re.compile(r"^([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)+)\.(?:as|ofType)\(([A-Za-z]+)\)$")


def _issue(path: str, message: str, code: str = "invalid", severity: str = "error") -> Issue:
    return {"severity": severity, "code": code, "diagnostics": f"{path}: {message}", "expression": [path]}


def check(resource: dict[str, Any], path: str) -> list[Issue]:
    rtype = resource.get("resourceType")
    if rtype == "SearchParameter":
        return _search_parameter(resource, path)
    if rtype == "CodeSystem":
        return _code_system(resource, path)
    if rtype == "CapabilityStatement":
        return _capability_statement(resource, path)
    return []


# -- SearchParameter -------------------------------------------------------------------------------


@cache
def _elements(type_name: str) -> dict[str, list[str]]:
    """Element path (choice names without [x]) -> type codes, for one R4 type."""
    sd = definitions.structure_definition(type_name)
    out: dict[str, list[str]] = {}
    for el in sd["elements"] if sd else ():
        p = el["path"]
        codes = [t.get("code", "") for t in el.get("type", ())]
        codes = [
            c.rsplit(".", 1)[-1] if c.startswith("http://hl7.org/fhirpath/System.") else c for c in codes
        ]
        out[p[:-3] if p.endswith("[x]") else p] = [("string" if c == "String" else c) for c in codes]
        if el.get("contentReference"):
            out[p] = ["#" + el["contentReference"].lstrip("#")]
    return out


def _path_types(base: str, steps: list[str]) -> list[str] | None:
    """The type codes a dotted path reaches from a resource type; None when it names no element."""
    types = [base]
    owner, rel = base, base
    for step in steps:
        nxt: list[str] = []
        found = False
        for t in types:
            if t.startswith("#"):
                owner, rel = base, t[1:]
            elif t in ("BackboneElement", "Element"):
                pass  # keep walking inside the owner type
            else:
                owner, rel = t, t
            candidate = f"{rel}.{step}"
            codes = _elements(owner).get(candidate)
            if codes is None:
                continue
            found = True
            rel = candidate
            nxt.extend(codes)
        if not found:
            return None
        types = nxt
    return types


def _branches(expression: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return parts


def _bases(sp: dict[str, Any]) -> list[str]:
    bases = [b for b in fhirjson.listed(sp.get("base")) if isinstance(b, str)]
    return [b for b in bases if definitions.is_resource_type(b) or b in ("Resource", "DomainResource")]


def _search_parameter(sp: dict[str, Any], path: str) -> list[Issue]:
    issues: list[Issue] = []
    kind = sp.get("type")
    expression = sp.get("expression")
    if kind == "composite" and not sp.get("component"):
        issues.append(
            _issue(f"{path}.component", "A composite search parameter needs its components", "required")
        )
    if not isinstance(expression, str) or not expression.strip():
        return issues
    from fhirpathpy import compile as fp_compile

    try:
        fp_compile(expression)
    except Exception as exc:  # the parser raises assorted exception types
        issues.append(_issue(f"{path}.expression", f"The expression is not valid FHIRPath: {exc}"))
        return issues
    wanted = SEARCHABLE.get(kind) if isinstance(kind, str) else None
    bases = set(_bases(sp))
    for branch in _branches(expression):
        plain = _PLAIN.match(branch) or _FUNCTION_TYPE.match(branch)
        if not plain:
            continue  # a function in the path: not typed statically here
        dotted, narrowed = plain.group(1), plain.group(2)
        head, *steps = dotted.split(".")
        if head in ("Resource", "DomainResource") or (bases and head not in bases):
            continue
        if not definitions.is_resource_type(head):
            issues.append(_issue(f"{path}.expression", f"{head} in {branch!r} is not a resource type"))
            continue
        types = _path_types(head, steps)
        if types is None:
            issues.append(
                _issue(f"{path}.expression", f"{dotted} is not an element of {head} (in {branch!r})")
            )
            continue
        if narrowed:
            if narrowed not in types and not (narrowed == "SimpleQuantity" and "Quantity" in types):
                issues.append(
                    _issue(
                        f"{path}.expression", f"{dotted} cannot be a {narrowed} (it is {', '.join(types)})"
                    )
                )
                continue
            types = [narrowed]
        if wanted is not None and not any(
            t in wanted or (kind == "reference" and definitions.is_resource_type(t)) or t.startswith("#")
            for t in types
        ):
            issues.append(
                _issue(
                    f"{path}.type",
                    f"A {kind} parameter cannot search {dotted}, a {'/'.join(types)} (search.html)",
                )
            )
    return issues


# -- CodeSystem ------------------------------------------------------------------------------------


def _concepts(concepts: Any, path: str):  # type: ignore[no-untyped-def]
    for i, c in enumerate(concepts if isinstance(concepts, list) else ()):
        if isinstance(c, dict):
            yield c, f"{path}[{i}]"
            yield from _concepts(c.get("concept"), f"{path}[{i}].concept")


def _code_system(cs: dict[str, Any], path: str) -> list[Issue]:
    issues: list[Issue] = []
    declared: dict[str, Any] = {}
    for i, prop in enumerate(cs.get("property") or ()):
        if not isinstance(prop, dict) or not isinstance(prop.get("code"), str):
            continue
        if prop["code"] in declared:  # a warning: concepts can still use it (HL7's SNOMED CT has one)
            issues.append(
                _issue(
                    f"{path}.property[{i}].code",
                    f"Property code '{prop['code']}' is declared twice",
                    severity="warning",
                )
            )
        declared[prop["code"]] = prop.get("type")
    count = 0
    for concept, cpath in _concepts(cs.get("concept"), f"{path}.concept"):
        count += 1
        for j, prop in enumerate(concept.get("property") or ()):
            if not isinstance(prop, dict):
                continue
            code = prop.get("code")
            ppath = f"{cpath}.property[{j}]"
            if code not in declared:
                issues.append(
                    _issue(f"{ppath}.code", f"Property '{code}' is not declared in CodeSystem.property")
                )
                continue
            want = _PROPERTY_VALUE.get(declared[code])
            given = next((k for k in prop if k.startswith("value")), None)
            if want is not None and given is not None and given != want:
                issues.append(
                    _issue(
                        f"{ppath}.{given}",
                        f"Property '{code}' is declared as {declared[code]}: the value must be {want}",
                    )
                )
    total = cs.get("count")
    if (
        cs.get("content") == "complete"
        and isinstance(total, int)
        and not isinstance(total, bool)
        and total != count
    ):
        issues.append(
            _issue(f"{path}.count", f"count is {total} but the code system defines {count} concepts")
        )
    return issues


# -- CapabilityStatement ---------------------------------------------------------------------------


def _capability_statement(cs: dict[str, Any], path: str) -> list[Issue]:
    from fhir_server.search import registry
    from fhir_server.validation.model import compiled

    issues: list[Issue] = []
    modes: dict[str, int] = {}
    for r, rest in enumerate(cs.get("rest") or ()):
        if not isinstance(rest, dict):
            continue
        mode = rest.get("mode")
        if isinstance(mode, str):
            if mode in modes:
                issues.append(
                    _issue(f"{path}.rest[{r}].mode", f"rest[{modes[mode]}] already describes mode '{mode}'")
                )
            modes.setdefault(mode, r)
        for n, res in enumerate(rest.get("resource") or ()):
            if not isinstance(res, dict):
                continue
            rpath = f"{path}.rest[{r}].resource[{n}]"
            rtype = res.get("type")
            for key in ("profile", "supportedProfile"):
                urls = res.get(key)
                for k, url in enumerate(urls if isinstance(urls, list) else [urls] if urls else []):
                    sd = compiled(url) if isinstance(url, str) else None
                    if sd is not None and isinstance(rtype, str) and sd.type != rtype:
                        where = f"{rpath}.{key}" + (f"[{k}]" if isinstance(urls, list) else "")
                        issues.append(_issue(where, f"{url} profiles {sd.type}, not {rtype}"))
            for s, param in enumerate(res.get("searchParam") or ()):
                if not isinstance(param, dict) or not isinstance(param.get("definition"), str):
                    continue
                known = registry.definition(param["definition"])
                if known is not None and param.get("type") not in (None, known.get("type")):
                    issues.append(
                        _issue(
                            f"{rpath}.searchParam[{s}].type",
                            f"{param['definition']} is a {known.get('type')} parameter, "
                            f"not {param.get('type')}",
                        )
                    )
    return issues
