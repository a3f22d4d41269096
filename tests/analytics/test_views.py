"""ViewDefinitions column by column on hand-made resources, and their errors naming the element."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.analytics.views.definition import View, ViewError, compile_view
from fhir_server.analytics.views.run import rows_of


@pytest.fixture(autouse=True)
def _both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every view these tests run goes through the compiled plan and the server's FHIRPath engine
    path by path: the rows (or the error) must be the same."""
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
    # Not stored, so no meta.lastUpdated: every Patient is kept, the mothers of the under-6s too
    # (test_children_view_on_a_stored_population leaves the adults out).
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


def _patient(id_: str, born: str | None, updated: str | None = "2026-06-15T03:00:00.000Z") -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Patient", "id": id_, "gender": "female"}
    if born is not None:
        out["birthDate"] = born
    if updated is not None:
        out["meta"] = {"versionId": "1", "lastUpdated": updated}
    return out


def test_children_view_holds_children_not_their_mothers_or_other_adults() -> None:
    """A child is a Patient under 18 on the day its record was last written (the 43-file mapper reads
    the age at export the same way): a mother's own Patient (her antenatal and birth records) and the
    other adults a health centre registers are no rows."""
    from fhir_server.analytics.views.library import shipped_view

    resources = [
        _patient("baby", "2025-12-01"),
        _patient("mother", "1996-03-02"),
        _patient("teen-mother", "2009-01-20"),  # 17: a child herself
        _patient("eighteen-today", "2008-06-15"),
        _patient("eighteen-tomorrow", "2008-06-16"),
        _patient("grandfather", "1950-01-01"),
        _patient("no-birth-date", None),  # age unknown: kept
        _patient("born-in-2001", "2001"),  # a partial date: age unknown to the day, kept
        _patient("inline", "1980-01-01", updated=None),  # given inline, never stored: kept
        {"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": "Patient/baby"}},
    ]
    rows = rows_of(shipped_view("children"), resources)
    assert [r[0] for r in rows] == [
        "baby",
        "teen-mother",
        "eighteen-tomorrow",
        "no-birth-date",
        "born-in-2001",
        "inline",
    ]
    assert rows[0][1:3] == ("2025-12-01", "female")


async def test_children_view_on_a_stored_population_leaves_the_mothers_out() -> None:
    from datetime import date

    from fhir_server.analytics.views.library import shipped_view
    from fhir_server.interactions.writes import now_instant, stamp
    from fhir_server.synthetic.population import generate

    when = now_instant()
    resources = []
    for batch in generate(11, children=20):
        for resource in batch:
            resource = dict(resource)
            stamp(None, resource, resource["resourceType"], resource["id"], 1, when)
            resources.append(resource)
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    mothers = {p["id"] for p in patients if any(i["system"].endswith("/PID") for i in p["identifier"])}
    today = date.fromisoformat(when[:10])

    def age(born: str) -> int:
        b = date.fromisoformat(born)
        return today.year - b.year - ((today.month, today.day) < (b.month, b.day))

    adults = {p["id"] for p in patients if age(p["birthDate"]) >= 18}
    assert mothers and adults and adults <= mothers
    ids = [r[0] for r in rows_of(shipped_view("children"), resources)]
    assert sorted(ids) == sorted(p["id"] for p in patients if p["id"] not in adults)
    assert len(ids) == len(patients) - len(adults) >= 20
