"""ViewDefinitions column by column on hand-made resources, and their errors naming the element."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.analytics.views.definition import View, ViewError, compile_view
from fhir_server.analytics.views.run import rows_of


@pytest.fixture(autouse=True)
def _both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every view these tests run goes through the compiled plan and the general evaluator: the rows
    (or the error) must be the same."""
    planned = View.rows

    def outcome(run: Any) -> Any:
        try:
            return run()
        except ViewError as exc:
            return exc

    def checked(self: View, resource: dict[str, Any]) -> list[tuple[Any, ...]]:
        fast = outcome(lambda: planned(self, resource))
        general = outcome(lambda: self.rows_evaluated(resource))
        if isinstance(fast, ViewError):
            assert isinstance(general, ViewError)
            assert (fast.message, fast.where) == (general.message, general.where)
            raise fast
        assert fast == general
        return fast  # type: ignore[no-any-return]

    monkeypatch.setattr(View, "rows", checked)


PATIENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "female",
        "birthDate": "2020-02-03",
        "name": [
            {"use": "official", "family": "Thongdi", "given": ["Somying", "Malee"]},
            {"use": "nickname", "given": ["Noi"]},
        ],
        "telecom": [{"system": "phone", "value": "0812345678"}],
        "deceasedBoolean": False,
    },
    {"resourceType": "Patient", "id": "p2", "gender": "male", "name": [], "address": []},
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
]


def view(select: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ViewDefinition",
        "status": "active",
        "resource": "Patient",
        "select": select,
        **extra,
    }


def run(definition: dict[str, Any], resources: list[dict[str, Any]] = PATIENTS) -> list[dict[str, Any]]:
    compiled = compile_view(definition)
    return [dict(zip(compiled.columns, row, strict=True)) for row in rows_of(compiled, resources)]


def test_columns_one_row_per_resource_of_the_type() -> None:
    rows = run(
        view(
            [
                {
                    "column": [
                        {"name": "id", "path": "getResourceKey()", "type": "id"},
                        {"name": "sex", "path": "gender", "type": "code"},
                        {"name": "born", "path": "birthDate", "type": "date"},
                        {"name": "deceased", "path": "deceased.ofType(boolean)", "type": "boolean"},
                        {"name": "names", "path": "name.count()", "type": "integer"},
                    ]
                }
            ]
        )
    )
    assert rows == [
        {"id": "p1", "sex": "female", "born": "2020-02-03", "deceased": False, "names": 2},
        {"id": "p2", "sex": "male", "born": None, "deceased": None, "names": 0},
    ]


def test_for_each_over_empty_arrays_drops_the_resource_and_or_null_keeps_it() -> None:
    select = [
        {"column": [{"name": "id", "path": "id"}]},
        {"forEach": "name", "column": [{"name": "family", "path": "family"}, {"name": "use", "path": "use"}]},
    ]
    assert run(view(select)) == [
        {"id": "p1", "family": "Thongdi", "use": "official"},
        {"id": "p1", "family": None, "use": "nickname"},
    ]
    select[1] = {"forEachOrNull": "name", "column": select[1]["column"]}
    assert run(view(select)) == [
        {"id": "p1", "family": "Thongdi", "use": "official"},
        {"id": "p1", "family": None, "use": "nickname"},
        {"id": "p2", "family": None, "use": None},
    ]


def test_nested_for_each_collection_and_join() -> None:
    rows = run(
        view(
            [
                {"column": [{"name": "id", "path": "id"}]},
                {
                    "forEach": "name.where(use = 'official')",
                    "column": [
                        {"name": "given", "path": "given", "collection": True},
                        {"name": "joined", "path": "given.join(' ')"},
                    ],
                    "select": [{"forEach": "given", "column": [{"name": "one", "path": "$this"}]}],
                },
            ]
        )
    )
    assert rows == [
        {"id": "p1", "given": ["Somying", "Malee"], "joined": "Somying Malee", "one": "Somying"},
        {"id": "p1", "given": ["Somying", "Malee"], "joined": "Somying Malee", "one": "Malee"},
    ]


def test_union_all_and_constants_and_where() -> None:
    definition = view(
        [
            {"column": [{"name": "id", "path": "id"}]},
            {
                "unionAll": [
                    {
                        "forEach": "telecom.where(system = %phone)",
                        "column": [{"name": "contact", "path": "value"}],
                    },
                    {
                        "forEach": "name.where(use = 'nickname')",
                        "column": [{"name": "contact", "path": "given.first()"}],
                    },
                ]
            },
        ],
        constant=[{"name": "phone", "valueCode": "phone"}],
        where=[{"path": "gender = 'female'"}],
    )
    assert run(definition) == [{"id": "p1", "contact": "0812345678"}, {"id": "p1", "contact": "Noi"}]


def test_several_values_in_a_single_column_is_an_error_naming_it() -> None:
    compiled = compile_view(view([{"column": [{"name": "given", "path": "name.given"}]}]))
    with pytest.raises(ViewError) as caught:
        rows_of(compiled, PATIENTS)
    assert caught.value.where == "ViewDefinition.select[0].column[0].path"
    assert "Patient/p1" in caught.value.message


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"resource": "Patientx"}, "ViewDefinition.resource"),
        ({"status": None}, "ViewDefinition.status"),
        ({"select": []}, "ViewDefinition.select"),
        (
            {"select": [{"column": [{"name": "a", "path": "name.where("}]}]},
            "ViewDefinition.select[0].column[0].path",
        ),
        (
            {"select": [{"column": [{"name": "a", "path": "id", "type": "text"}]}]},
            "ViewDefinition.select[0].column[0].type",
        ),
        ({"select": [{"column": [{"name": "1a", "path": "id"}]}]}, "ViewDefinition.select[0].column[0].name"),
        (
            {"select": [{"column": [{"name": "a", "path": "id.frobnicate()"}]}]},
            "ViewDefinition.select[0].column[0].path",
        ),
        (
            {
                "select": [
                    {"forEach": "name", "forEachOrNull": "name", "column": [{"name": "a", "path": "id"}]}
                ]
            },
            "ViewDefinition.select[0].forEachOrNull",
        ),
        (
            {
                "select": [
                    {
                        "unionAll": [
                            {"column": [{"name": "a", "path": "id"}]},
                            {"column": [{"name": "b", "path": "id"}]},
                        ]
                    }
                ]
            },
            "ViewDefinition.select[0].unionAll[1]",
        ),
        ({"select": [{"column": [{"name": "a", "path": "%nope"}]}]}, "ViewDefinition.constant"),
        ({"where": [{"path": "gender ="}]}, "ViewDefinition.where[0].path"),
    ],
)
def test_bad_definitions_name_the_element(change: dict[str, Any], where: str) -> None:
    definition = view([{"column": [{"name": "id", "path": "id"}]}])
    definition.update(change)
    with pytest.raises(ViewError) as caught:
        compile_view(definition)
    assert caught.value.where == where


def test_shipped_views_compile_and_run_on_a_generated_population() -> None:
    from fhir_server.analytics.views.library import shipped_views
    from fhir_server.synthetic.population import generate

    resources = [r for batch in generate(11, children=20) for r in batch]
    counts = {}
    for definition in shipped_views():
        counts[definition["id"]] = len(rows_of(compile_view(definition), resources))
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    # One row per Patient: the 20 children and the mothers of the under-6s (their birth records).
    mothers = [p for p in patients if any(i["system"].endswith("/PID") for i in p["identifier"])]
    assert counts["children"] == len(patients) == 20 + len(mothers) and mothers
    immunisations = sum(
        1 for r in resources if r["resourceType"] == "Immunization" and r["status"] == "completed"
    )
    assert counts["immunisations"] == immunisations > 0
    tasks = sum(1 for r in resources if r["resourceType"] == "Task")
    assert counts["referrals"] == tasks


def test_children_view_leaves_golden_records_out() -> None:
    """A child known to two agencies has two source Patients and one server-managed golden Patient
    (fhir_server.identity): the golden one is no child of its own in the views and the measures."""
    from fhir_server import canonical
    from fhir_server.analytics.views.library import shipped_view

    tagged = [
        {"resourceType": "Patient", "id": f"{code}-1", "meta": {"tag": [{"system": system, "code": code}]}}
        for system, code in (
            (canonical.IDENTITY_TAG_SYSTEM, "golden"),
            (canonical.IDENTITY_TAG_SYSTEM, "retired"),
            ("https://termtem.org/fhir/tag/writing-agency", "Organization/hc-1"),
        )
    ]
    children = shipped_view("children")
    rows = rows_of(children, [*PATIENTS, *tagged])
    assert [r[0] for r in rows] == ["p1", "p2", "Organization/hc-1-1"]
