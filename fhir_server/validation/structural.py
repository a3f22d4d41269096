"""Structural validation of a FHIR R4 resource: known elements, datatypes, primitive formats, cardinality.

Two engines work together, because there is no R4 model set for Python:

* A walker over our own R4 snapshots (``fhir_server.definitions``) checks every resource: known
  elements, strict JSON types (pydantic's lax mode would accept ``"yes"`` for a boolean), primitive
  regexes, array-or-not cardinality, one value per choice, and required elements (pydantic runs the
  models' required-element checks only once every field has parsed, so one bad field would hide them).
* ``fhir.resources.R4B`` pydantic models add their checks for every type whose R4B model matches R4;
  types R4B dropped or redesigned (``_R4_ONLY_STRUCTURE``) use the walker alone, an unknown-element
  finding of a model is kept only when R4 agrees, and elements only R4B has are rejected.
  Findings of both are merged, one issue per element.

Findings are OperationOutcome issue dicts whose ``expression`` is a FHIRPath such as
``Patient.name[0].given[1]``. Terminology bindings and invariants are checked elsewhere.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import fhir.resources.R4B as _r4b
from pydantic import ValidationError

from fhir_server import definitions

__all__ = ["is_known_resource_type", "validate_structure"]

Issue = dict[str, Any]

# R4 resource types whose R4B model is missing or differs from R4 (found by comparing the models with
# the R4 snapshots and by running every HL7 R4 example): these are checked by the R4 snapshot walker.
_R4_ONLY_STRUCTURE: frozenset[str] = frozenset(
    {
        # Redesigned in R4B (the R4B model lacks R4 elements such as Evidence.exposureBackground).
        "Evidence",
        "EvidenceVariable",
        # Removed or replaced in R4B (no model at all).
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)

# Elements R4B added to resources it otherwise kept: the model accepts them, R4 does not.
_R4B_ONLY_ELEMENTS: dict[str, frozenset[str]] = {
    "ActivityDefinition": frozenset({"subjectCanonical", "_subjectCanonical"}),
    "PlanDefinition": frozenset({"subjectCanonical", "_subjectCanonical"}),
}
_SYSTEM_STRING = "http://hl7.org/fhirpath/System.String"
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_BACKBONE_TYPES = frozenset({"BackboneElement", "Element"})
_MISSING_TYPES = frozenset({"missing", "model_field_validation.missing"})
_STRUCTURE_TYPES = frozenset(
    {"extra_forbidden", "list_type", "dict_type", "model_type", "model_attributes_type"}
)


def is_known_resource_type(name: str) -> bool:
    """True when ``name`` is a concrete FHIR R4 resource type."""
    return definitions.is_resource_type(name)


def validate_structure(resource: Any) -> list[Issue]:
    """Every structural error in ``resource`` (an empty list when it is valid R4)."""
    if not isinstance(resource, dict):
        return [_issue("structure", "A resource must be a JSON object", [])]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_known_resource_type(resource_type):
        return [
            _issue(
                "invalid",
                f"Unknown or missing resourceType {resource_type!r}",
                ["resourceType"] if isinstance(resource_type, str) else [],
            )
        ]
    r4_issues = _Walker().resource(resource)
    if not _uses_model(resource_type):
        return r4_issues
    r4_unknown = {tuple(i["expression"]) for i in r4_issues if i["code"] == "structure"}
    issues = [
        i
        for i in _model_issues(resource_type, resource)
        # R4B's models reject a few valid R4 elements (e.g. ``_valueString`` inside Extension): keep an
        # unknown-element finding only when the R4 snapshot agrees.
        if not i.pop("_unknown", False) or tuple(i["expression"]) in r4_unknown
    ]
    issues.extend(
        _issue(
            "structure",
            f"{resource_type}.{key}: Unknown element '{key}' (R4B only)",
            [f"{resource_type}.{key}"],
        )
        for key in _R4B_ONLY_ELEMENTS.get(resource_type, ())
        if key in resource
    )
    covered = {tuple(i.get("expression", ())) for i in issues}
    issues.extend(i for i in r4_issues if tuple(i.get("expression", ())) not in covered)
    return issues


# -- R4B pydantic models ----------------------------------------------------------------------------


@cache
def _uses_model(resource_type: str) -> bool:
    return resource_type not in _R4_ONLY_STRUCTURE and _model_class(resource_type) is not None


@cache
def _model_class(resource_type: str) -> Any:
    try:
        return _r4b.get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


def _model_issues(resource_type: str, resource: dict[str, Any]) -> list[Issue]:
    try:
        _model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        return [_from_pydantic(resource_type, error) for error in exc.errors(include_url=False)]
    return []


def _from_pydantic(resource_type: str, error: Any) -> Issue:
    kind: str = error["type"]
    message: str = error["msg"].removeprefix("Value error, ")
    if kind in _MISSING_TYPES:
        code = "required"
    elif kind in _STRUCTURE_TYPES or "but got multiple" in message:
        code = "structure"
    elif kind.endswith(("_type", "_parsing", "_mismatch")) or kind == "value_error":
        code = "value"
    else:
        code = "invalid"
    expression = _fhirpath(resource_type, error["loc"])
    issue = _issue(code, f"{expression}: {message}", [expression])
    if kind == "extra_forbidden":
        issue["_unknown"] = True  # private marker, removed before returning
    return issue


def _fhirpath(resource_type: str, loc: tuple[Any, ...]) -> str:
    """Turn a pydantic ``loc`` into a FHIRPath, dropping pydantic's own parts (validator/union tags)."""
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and _is_element_name(part):
            name = part.removesuffix("__ext").lstrip("_")
            path += f".{name}"
    return path


def _is_element_name(part: str) -> bool:
    return part != "__root__" and not any(c in part for c in "[]()-, ")


# -- R4 snapshot walker -----------------------------------------------------------------------------


class _Children:
    """The direct children of one element path in a snapshot, by JSON name."""

    def __init__(self) -> None:
        self.named: dict[str, dict[str, Any]] = {}
        self.choices: dict[str, dict[str, Any]] = {}  # "value" -> value[x] element

    def find(self, key: str) -> tuple[dict[str, Any] | None, str | None, str]:
        """(element, type code, element name) for a JSON key; element None when unknown."""
        element = self.named.get(key)
        if element is not None:
            types = element.get("type") or [{}]
            return element, types[0].get("code"), key
        for prefix, element in self.choices.items():
            if key.startswith(prefix):
                suffix = key[len(prefix) :]
                for t in element.get("type", []):
                    code = t.get("code") or ""
                    if code[:1].upper() + code[1:] == suffix:
                        return element, code, prefix
        return None, None, key


@cache
def _children_index(type_name: str) -> dict[str, _Children]:
    sd = definitions.structure_definition(type_name)
    index: dict[str, _Children] = {}
    if sd is None:
        return index
    for element in sd["elements"]:
        if "sliceName" in element or "." not in element["path"]:
            continue
        parent, name = element["path"].rsplit(".", 1)
        children = index.setdefault(parent, _Children())
        if name.endswith("[x]"):
            children.choices[name[:-3]] = element
        else:
            children.named[name] = element
    return index


@cache
def _primitive_regex(type_name: str) -> re.Pattern[str] | None:
    pattern = definitions.primitive_pattern(type_name)
    # The spec's regexes use XML Schema / Java semantics, where \s and \d are ASCII-only (so a
    # no-break space is not whitespace): re.ASCII gives Python the same reading.
    return re.compile(pattern, re.ASCII) if pattern else None


@cache
def _primitive_types() -> frozenset[str]:
    return frozenset(definitions.primitive_types())


class _Walker:
    """Checks JSON against the R4 snapshots: known elements, JSON types, primitive formats, cardinality."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def resource(self, resource: dict[str, Any]) -> list[Issue]:
        self._object(resource, resource["resourceType"], resource["resourceType"], resource["resourceType"])
        return self.issues

    def _add(self, code: str, message: str, expression: str) -> None:
        self.issues.append(_issue(code, f"{expression}: {message}", [expression]))

    def _object(self, obj: dict[str, Any], type_name: str, sd_path: str, fhirpath: str) -> None:
        children = _children_index(type_name).get(sd_path)
        if children is None:
            return
        seen_choices: dict[str, str] = {}
        for key, value in obj.items():
            if key == "resourceType" and sd_path == type_name:
                continue
            name = key[1:] if key.startswith("_") else key
            element, code, element_name = children.find(name)
            if element is None or (key.startswith("_") and code not in _primitive_types()):
                self._add("structure", f"Unknown element '{key}'", f"{fhirpath}.{name}")
                continue
            if element_name in children.choices and not key.startswith("_"):
                if element_name in seen_choices:
                    self._add("structure", f"Only one of {element_name}[x] is allowed", fhirpath)
                seen_choices[element_name] = key
            self._values(key, value, element, code, type_name, f"{fhirpath}.{name}")
        for name, element in children.named.items():
            if element.get("min", 0) >= 1 and name not in obj and f"_{name}" not in obj:
                self._add("required", f"Missing required element '{name}'", f"{fhirpath}.{name}")
        for prefix, element in children.choices.items():
            if element.get("min", 0) >= 1 and not any(k.lstrip("_").startswith(prefix) for k in obj):
                self._add("required", f"Missing required element '{prefix}[x]'", f"{fhirpath}.{prefix}[x]")

    def _values(
        self, key: str, value: Any, element: dict[str, Any], code: str | None, type_name: str, fhirpath: str
    ) -> None:
        repeating = element.get("max") != "1"
        if isinstance(value, list):
            if not repeating:
                self._add("structure", "Element does not repeat: an array is not allowed", fhirpath)
                return
            items = [(item, f"{fhirpath}[{n}]") for n, item in enumerate(value)]
        else:
            if repeating:
                self._add("structure", "Element repeats: a JSON array is required", fhirpath)
                return
            items = [(value, fhirpath)]
        for item, path in items:
            if item is None:
                continue
            if key.startswith("_"):
                self._complex(item, "Element", "Element", path)
            else:
                self._value(item, element, code, type_name, path)

    def _value(self, item: Any, element: dict[str, Any], code: str | None, type_name: str, path: str) -> None:
        if "contentReference" in element:
            self._complex(item, type_name, element["contentReference"].lstrip("#"), path)
        elif code in _BACKBONE_TYPES:
            self._complex(item, type_name, element["path"], path)
        elif code == "Resource":
            self._contained(item, path)
        elif code == _SYSTEM_STRING or code in _primitive_types():
            self._primitive(item, code, path)
        elif code is not None:
            self._complex(item, code, code, path)

    def _complex(self, item: Any, type_name: str, sd_path: str, path: str) -> None:
        if not isinstance(item, dict):
            self._add("structure", "A JSON object is required", path)
            return
        self._object(item, type_name, sd_path, path)

    def _contained(self, item: Any, path: str) -> None:
        rtype = item.get("resourceType") if isinstance(item, dict) else None
        if not isinstance(rtype, str) or not is_known_resource_type(rtype):
            self._add("invalid", f"Unknown or missing resourceType {rtype!r}", path)
            return
        self._object(item, rtype, rtype, path)

    def _primitive(self, item: Any, code: str | None, path: str) -> None:
        if code == "boolean":
            ok = isinstance(item, bool)
        elif code in _INTEGER_TYPES:
            ok = isinstance(item, int) and not isinstance(item, bool) and -(2**31) <= item < 2**31
            ok = ok and (code != "positiveInt" or item > 0) and (code != "unsignedInt" or item >= 0)
        elif code == "decimal":
            ok = isinstance(item, int | float) and not isinstance(item, bool)
        else:
            regex = _primitive_regex(code or "")
            ok = isinstance(item, str) and (regex is None or regex.fullmatch(item) is not None)
        if not ok:
            self._add("value", f"Invalid value {item!r} for type {code}", path)


def _issue(code: str, diagnostics: str, expression: list[str]) -> Issue:
    issue: Issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return issue
