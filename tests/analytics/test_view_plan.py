"""The compiled plan of a view (views/plan.py) gives exactly the rows of the server's FHIRPath engine
(``fhir_server.fhirpath``, which views use for every path outside the plan).

Every shipped view on a generated population, and a set of FHIRPath shapes on hand-made resources that
reach the corners (choice elements, several values, empty collections, $this, constants, %resource,
a resource type as the first step), each run both ways; the shapes views use most must be compiled.
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.analytics.views import plan
from fhir_server.analytics.views.definition import View, ViewError, compile_view
from fhir_server.analytics.views.library import shipped_views
from fhir_server.synthetic.population import generate


def _outcome(view: View, resource: dict[str, Any], planned: bool) -> Any:
    try:
        return view.rows(resource) if planned else view.rows_evaluated(resource)
    except ViewError as exc:
        return ("ViewError", exc.message, exc.where)
    except ValueError as exc:  # FhirPathError: the plan's wording may differ from the engine's
        return (type(exc).__name__,)


def _same_both_ways(view: View, resources: list[dict[str, Any]]) -> int:
    rows = 0
    for resource in resources:
        if resource.get("resourceType") != view.resource_type:
            continue
        fast, general = _outcome(view, resource, True), _outcome(view, resource, False)
        assert fast == general, (resource.get("id"), fast, general)
        assert [[type(v) for v in row] for row in fast] == [[type(v) for v in row] for row in general]
        rows += len(fast) if isinstance(fast, list) else 0
    return rows


def _paths(item: Any) -> list[str]:
    if isinstance(item, dict):
        out = [v for k, v in item.items() if k in ("path", "forEach", "forEachOrNull") and isinstance(v, str)]
        return out + [p for v in item.values() for p in _paths(v)]
    if isinstance(item, list):
        return [p for v in item for p in _paths(v)]
    return []


def test_every_shipped_view_gives_the_same_rows_both_ways_and_is_compiled_whole() -> None:
    resources = [r for batch in generate(5, children=40) for r in batch]
    for definition in shipped_views():
        view = compile_view(definition)
        assert _same_both_ways(view, resources) > 0 or definition["id"] == "help_requests"
        uncompiled = [p for p in _paths(definition) if not plan.compiles(p)]
        assert uncompiled == [], (definition["id"], uncompiled)


OBSERVATIONS: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "29463-7"},
                {"system": "http://snomed.info/sct", "code": "27113001"},
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-06T10:00:00+07:00",
        "valueQuantity": {"value": 12.5, "unit": "kg", "code": "kg"},
        "performer": [{"reference": "Organization/hc-1"}, {"reference": "Practitioner/x"}],
        "meta": {
            "tag": [{"system": "https://termtem.org/fhir/tag/writing-agency", "code": "Organization/hc-1"}]
        },
        "extension": [
            {"url": "http://x/band", "valueCoding": {"code": "9"}},
            {"url": "http://x/n", "valueInteger": 3},
        ],
        "component": [
            {"code": {"text": "a"}, "valueString": "first"},
            {"code": {"text": "b"}, "valueBoolean": True},
            {"code": {"text": "c"}},
        ],
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "entered-in-error",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8302-2"}, {"system": "http://loinc.org"}]
        },
        "subject": {"reference": "urn:uuid:1234"},
        "effectivePeriod": {"start": "2024-01-01"},
        "valueCodeableConcept": {"coding": [{"system": "http://x/r", "code": "normal"}]},
        "performer": [],
    },
    {
        "resourceType": "Observation",
        "id": "o3",
        "status": "final",
        "code": {},
        "subject": {"reference": "Patient/p3/_history/2"},
    },
    {"resourceType": "Observation", "status": "preliminary", "valueInteger": 7},
]

SHAPES = [
    # (path, compiled?)
    ("getResourceKey()", True),
    ("subject.getReferenceKey(Patient)", True),
    ("subject.getReferenceKey()", True),
    ("performer.getReferenceKey(Organization)", True),
    ("effective.ofType(dateTime).substring(0, 10)", True),
    ("effective.ofType(Period).start", True),
    ("value.ofType(Quantity).value", True),
    ("value.ofType(integer)", True),
    ("value.ofType(CodeableConcept).coding.where(system = %result).code.first()", True),
    ("code.coding.where(system = 'http://loinc.org').code.first()", True),
    ("code.coding.where(system = 'http://loinc.org').code", True),
    ("code.coding.code.join(',')", True),
    ("code.coding.code.join()", True),
    ("code.coding.exists()", True),
    ("code.coding.where(code = '8302-2' or code = '29463-7').exists()", True),
    ("code.coding.where(system != 'http://loinc.org').count()", True),
    ("code.coding.empty()", True),
    ("status = 'final' and code.coding.exists().not()", True),
    ("status != 'entered-in-error' or code.exists()", True),
    (
        "meta.tag.where(system = 'https://termtem.org/fhir/tag/writing-agency').code.first()"
        ".replace('Organization/', '')",
        True,
    ),
    ("extension('http://x/band').value.ofType(Coding).code", True),
    ("extension(%band).value", True),
    ("extension('http://x/none').exists()", True),
    ("component.value", True),
    ("component.where(value = true).code.text", True),
    ("component.where($this.code.text = 'a').value.ofType(string)", True),
    ("Observation.status", True),
    ("%resource.id", True),
    ("%loinc", True),
    ("iif(status = 'final', id, {})", True),
    ("iif(value.exists(), 'yes')", True),
    ("status = %status", True),
    ("performer.first().reference.substring(7)", True),
    ("code.coding.code.substring(0, 2)", True),
    ("status.substring(40)", True),
    ("(status)", True),
    ("status.length()", True),
    ("code.coding.count() + 1 > 2", True),
    ("code.coding.code.first().replace('-', '').toInteger() - 8000000 < 302", True),
    ("iif(status.length() = 5, status.length() - 1 >= 4, true)", True),
    ("id.toInteger()", True),
    ("status.length() + 'x'", False),
    ("value.ofType(Quantity).value + 1", False),
    ("code.coding[0].code", False),
    ("performer.reference.startsWith('Organization')", False),
    ("code.coding.select(code)", False),
    ("value.ofType(Quantity).value > 10", False),
    ("status in ('final' | 'amended')", False),
]


@pytest.mark.parametrize(("path", "compiled"), SHAPES)
def test_shapes_give_the_same_rows_both_ways(path: str, compiled: bool) -> None:
    definition = {
        "resourceType": "ViewDefinition",
        "status": "active",
        "resource": "Observation",
        "constant": [
            {"name": "result", "valueUri": "http://x/r"},
            {"name": "band", "valueUri": "http://x/band"},
            {"name": "status", "valueCode": "final"},
        ],
        "select": [{"column": [{"name": "v", "path": path, "collection": True}]}],
    }
    assert plan.compiles(path) is compiled
    view = compile_view(definition)
    _same_both_ways(view, OBSERVATIONS)
    single = {**definition, "select": [{"column": [{"name": "v", "path": path}]}]}
    _same_both_ways(compile_view(single), OBSERVATIONS)
    where = {**definition, "where": [{"path": path}], "select": [{"column": [{"name": "id", "path": "id"}]}]}
    _same_both_ways(compile_view(where), OBSERVATIONS)
    each = {
        **definition,
        "select": [{"forEachOrNull": path, "column": [{"name": "id", "path": "getResourceKey()"}]}],
    }
    _same_both_ways(compile_view(each), OBSERVATIONS)


def test_the_plan_is_used_and_fails_when_a_compiled_step_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows come from the compiled code: a broken helper in it changes them (so the comparison above
    compares two paths, not one path with itself)."""
    definition = {
        "resourceType": "ViewDefinition",
        "status": "active",
        "resource": "Observation",
        "select": [{"column": [{"name": "p", "path": "subject.getReferenceKey(Patient)"}]}],
    }
    assert compile_view(definition).rows(OBSERVATIONS[0]) == [("p1",)]
    monkeypatch.setitem(plan._RUNTIME, "_reference_keys", lambda items, wanted: ["wrong"])
    assert compile_view(definition).rows(OBSERVATIONS[0]) == [("wrong",)]
    assert compile_view(definition).rows_evaluated(OBSERVATIONS[0]) == [("p1",)]


@pytest.mark.parametrize(
    ("path", "groups"),
    [
        ("status = 'completed'", [{"completed"}]),
        ("a.where(b = 'x').exists() and (c = 'y' or d = 'z')", [{"x"}, {"y", "z"}]),
        ("a.exists(b = '1')", [{"1"}]),
        ("a.where(b = '1').exists().not()", []),
        ("a = 'x' or b.exists()", []),
        ("a.where(b = 'it\\'s').exists()", [{"it's"}]),
        (
            "code.coding.where(system = 'http://loinc.org' and (code = '1' or code = '2')).exists()",
            [{"http://loinc.org"}, {"1", "2"}],
        ),
    ],
)
def test_texts_a_where_needs_are_read_from_the_parse_tree(path: str, groups: list[set[str]]) -> None:
    """``View.may_match`` skips stored JSON lacking one of these texts without parsing it."""
    from fhir_server.analytics.views.fhirpath import compile_path, groups_of

    assert [set(g) for g in groups_of(compile_path(path))] == groups
