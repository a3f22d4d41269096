"""The growth_zscores view: one row per growth visit with a pseudonymous child key, district, age, the
measurements and WHO z-scores, checked against WHO reference values, with the views' access rules."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from fhir_server.analytics.views import derived
from fhir_server.analytics.views.definition import ViewError, compile_view
from fhir_server.analytics.views.library import shipped_view, shipped_views
from fhir_server.analytics.views.run import rows_of
from tests.security import scene
from tests.security.conftest import World

DOPA = "https://termtem.org/fhir/StructureDefinition/th-dopa-address-code"
SECRET = b"test-secret"


def child(pid: str, sex: str, born: str, district: str = "1011") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "gender": sex,
        "birthDate": born,
        "address": [
            {
                "extension": [
                    {
                        "url": DOPA,
                        "extension": [
                            {"url": "district", "valueCoding": {"code": district, "display": "ลาดกระบัง"}},
                            {"url": "subdistrict", "valueCoding": {"code": district + "01"}},
                        ],
                    }
                ]
            }
        ],
    }


def measured(oid: str, pid: str, day: str, loinc: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


WEIGHT, HEIGHT, LENGTH, HEAD, BMI = "29463-7", "8302-2", "8306-3", "9843-4", "39156-5"


def visits(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The derived rows of hand-made resources, by the same functions $run uses."""
    view = shipped_view("growth_zscores")
    children = shipped_view("children")
    rows = derived.growth_rows(
        rows_of(view, resources), view.columns, rows_of(children, resources), children.columns, SECRET
    )
    return [dict(zip(derived.GROWTH_SHAPE.columns, row, strict=True)) for row in rows]


def test_zscores_at_who_reference_medians_are_zero() -> None:
    """The WHO tables' medians (M of the LMS tables) give z = 0: WHO 2006 weight-for-age at birth is
    3.3464 kg for boys and 3.2322 kg for girls, 9.6479 kg for boys at 365 days; length at birth
    49.8842 cm (boys); height at 731 days 87.1161 cm (boys; lying length there is 0.7 cm more);
    BMI-for-age at birth 13.4069 (boys) and 13.3363 (girls); weight-for-length 2.441 kg at 45 cm
    (boys); head circumference at birth 34.4618 cm (boys)."""
    resources = [
        child("b1", "male", "2020-01-01"),
        child("g1", "female", "2020-01-01", district="1012"),
        measured("o1", "b1", "2020-01-01", WEIGHT, 3.3464, "kg"),
        measured("o2", "b1", "2020-01-01", LENGTH, 49.8842, "cm"),
        measured("o3", "b1", "2020-01-01", HEAD, 34.4618, "cm"),
        measured("o4", "b1", "2020-12-31", WEIGHT, 9647.9, "g"),
        measured("o5", "b1", "2022-01-01", HEIGHT, 0.871161, "m"),
        measured("o6", "b1", "2022-01-02", LENGTH, 87.8161, "cm"),
        measured("o7", "g1", "2020-01-01", WEIGHT, 3.2322, "kg"),
        measured("o8", "g1", "2020-01-01", BMI, 13.3363, "kg/m2"),
    ]
    rows = {(r["child_key"], r["date"]): r for r in visits(resources)}
    boy, girl = derived.child_key(SECRET, "b1"), derived.child_key(SECRET, "g1")
    birth = rows[(boy, "2020-01-01")]
    assert birth["z_wfa"] == 0.0 and birth["z_lhfa"] == 0.0 and birth["z_hcfa"] == 0.0
    assert birth["weight_kg"] == 3.3464 and birth["height_cm"] == 49.8842 and birth["measured_lying"] is True
    assert birth["bmi"] == round(3.3464 / 0.498842**2, 2) and birth["z_bmifa"] is not None
    assert (birth["age_days"], birth["age_months"], birth["sex"]) == (0, 0.0, "male")
    assert (birth["district_code"], birth["district_name"], birth["subdistrict_code"]) == (
        "1011",
        "ลาดกระบัง",
        "101101",
    )
    year = rows[(boy, "2020-12-31")]
    assert (year["age_days"], year["weight_kg"], year["z_wfa"]) == (365, 9.6479, 0.0)
    assert year["age_months"] == round(365 / 30.4375, 2) and year["z_lhfa"] is None
    two = rows[(boy, "2022-01-01")]
    assert (two["age_days"], two["height_cm"], two["measured_lying"], two["z_lhfa"]) == (
        731,
        87.1161,
        False,
        0.0,
    )
    assert two["z_wfa"] is None and two["z_wflh"] is None
    lying = rows[(boy, "2022-01-02")]
    assert lying["age_days"] == 732 and abs(lying["z_lhfa"]) <= 0.05  # 87.8161 lying = 87.1161 standing
    g = rows[(girl, "2020-01-01")]
    assert (g["z_wfa"], g["bmi"], g["z_bmifa"], g["district_code"]) == (0.0, 13.3363, 0.0, "1012")


def test_zscores_at_who_two_standard_deviations() -> None:
    """WHO 2006 weight-for-age at birth, boys: -2 SD is 2.5 kg and +2 SD 4.4 kg in the published
    tables (rounded to 0.1 kg); weight-for-length, boys, 45 cm: median 2.441 kg."""
    resources = [
        child("b1", "male", "2021-05-01"),
        child("b2", "male", "2021-05-01"),
        child("b3", "male", "2021-05-01"),
        measured("w1", "b1", "2021-05-01", WEIGHT, 2.5, "kg"),
        measured("w2", "b2", "2021-05-01", WEIGHT, 4.4, "kg"),
        measured("w3", "b3", "2021-05-01", WEIGHT, 2.441, "kg"),
        measured("l3", "b3", "2021-05-01", LENGTH, 45.0, "cm"),
    ]
    rows = {r["child_key"]: r for r in visits(resources)}
    low, high = rows[derived.child_key(SECRET, "b1")], rows[derived.child_key(SECRET, "b2")]
    assert -2.15 <= low["z_wfa"] <= -1.85 and 1.85 <= high["z_wfa"] <= 2.15
    assert rows[derived.child_key(SECRET, "b3")]["z_wflh"] == 0.0


def test_implausible_unknown_and_missing_give_no_zscore() -> None:
    resources = [
        child("b1", "male", "2020-01-01"),
        {**child("u1", "unknown", "2020-01-01"), "gender": "unknown"},
        {**child("n1", "female", "2020-01-01"), "birthDate": None},
        measured("x1", "b1", "2020-03-01", WEIGHT, 60, "kg"),  # no infant weighs that
        measured("x2", "b1", "2020-04-01", WEIGHT, 6, "[stone_av]"),  # a unit we do not convert
        measured("x3", "u1", "2020-03-01", WEIGHT, 5.5, "kg"),
        measured("x4", "n1", "2020-03-01", WEIGHT, 5.5, "kg"),
        measured("x5", "nobody", "2020-03-01", WEIGHT, 5.5, "kg"),  # no visible child: no row
    ]
    rows = visits(resources)
    keys = {r["child_key"]: r for r in rows}
    assert len(rows) == 3  # the visit in stones has no measurement left; the unknown child none
    assert keys[derived.child_key(SECRET, "b1")]["z_wfa"] is None
    assert keys[derived.child_key(SECRET, "b1")]["weight_kg"] == 60
    assert keys[derived.child_key(SECRET, "u1")]["z_wfa"] is None
    unborn = keys[derived.child_key(SECRET, "n1")]
    assert unborn["age_days"] is None and unborn["z_wfa"] is None


def test_child_key_is_stable_keyed_and_not_the_id() -> None:
    key = derived.child_key(SECRET, "child1")
    assert key == derived.child_key(SECRET, "child1") != derived.child_key(SECRET, "child2")
    assert key != derived.child_key(b"another-secret", "child1")
    assert "child1" not in key and len(key) == 24


def test_the_view_is_shipped_checked_and_not_in_the_warehouse() -> None:
    from fhir_server.analytics.warehouse import warehouse_views

    assert "growth_zscores" in [v["id"] for v in shipped_views()]
    assert "growth_zscores" not in [v.name for v in warehouse_views()]
    definition = dict(next(v for v in shipped_views() if v["id"] == "growth_zscores"))
    wrong = {**definition, "extension": [{"url": derived.DERIVATION_URL, "valueCode": "nonsense"}]}
    with pytest.raises(ViewError) as caught:
        compile_view(wrong)
    assert caught.value.where == "ViewDefinition.extension[0].valueCode"
    short = {**definition, "select": [{"column": definition["select"][0]["column"][:3]}]}
    with pytest.raises(ViewError) as caught:
        compile_view(short)
    assert "loinc" in caught.value.message


async def test_run_over_http_with_the_views_access_rules(world: World) -> None:
    from fhir_server.summary import who

    s = await scene.build(world)
    # child1 and child2: girls born 2020-01-01, 12.4 kg on 2024-03-20 (the profile's example); add a height
    height = measured("h", "child1", "2024-03-20", HEIGHT, 101.5, "cm")
    height.pop("id")
    assert (await s.hospital.post("Observation", height)).status_code == 201

    reply = await s.admin.get("ViewDefinition/growth_zscores/$run?_format=csv")
    assert reply.status_code == 200, reply.text
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert list(rows[0]) == derived.GROWTH_SHAPE.columns
    assert len(rows) == 2 and not any(r["child_key"] in ("child1", "child2") for r in rows)
    age = 1540  # 2020-01-01 to 2024-03-20
    by_height = {r["height_cm"]: r for r in rows}
    one, two = by_height["101.5"], by_height[""]
    assert float(one["z_wfa"]) == who.zscore("wfa", "female", age, 12.4).value
    assert float(one["z_lhfa"]) == who.zscore("lhfa", "female", age, 101.5).value
    assert float(one["z_wflh"]) == who.weight_for_length("female", age, 12.4, 101.5).value
    assert float(one["z_bmifa"]) == who.zscore("bmifa", "female", age, round(12.4 / 1.015**2, 2)).value
    assert two["z_lhfa"] == "" and two["z_wfa"] == one["z_wfa"] and one["age_days"] == str(age)

    # the same key for the same child, run after run, and through the other levels and formats
    reply = await s.admin.post(
        "$viewdefinition-run",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "_format", "valueCode": "parquet"},
                {"name": "viewReference", "valueString": "ViewDefinition/growth_zscores"},
            ],
        },
    )
    assert reply.status_code == 200, reply.text
    table = pq.read_table(io.BytesIO(reply.content))
    assert sorted(table.column("child_key").to_pylist()) == sorted(r["child_key"] for r in rows)
    assert str(table.schema.field("z_wfa").type) == "double"

    # school1 holds a consent for child1's growth: it sees that child's visit only
    reply = await s.school.get("ViewDefinition/growth_zscores/$run?_format=ndjson")
    assert reply.status_code == 200, reply.text
    seen = [orjson.loads(line) for line in reply.content.splitlines()]
    assert [r["child_key"] for r in seen] == [one["child_key"]]
    reply = await s.other_school.get("ViewDefinition/growth_zscores/$run?_format=ndjson")
    assert reply.status_code == 200 and reply.content == b""

    committee = await world.caller("khet-committee", "Organization/ops", "committee")
    reply = await committee.get("ViewDefinition/growth_zscores/$run")
    assert reply.status_code == 403 and reply.json()["resourceType"] == "OperationOutcome"
