"""Growth in the summary: WHO z-scores against published reference values, the Thai reading of them,
and measurements no child can have (flagged, never interpreted nor plotted)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from fhir_server import canonical
from fhir_server.summary import who
from tests.summary.support import FHIR_JSON, computed, sections

GROWTH = canonical.structure_definition(canonical.PROFILE_GROWTH)


def _measure(child: str, on: date, loinc: str, value: float, unit: str) -> dict[str, Any]:
    # The TH growth profile refuses a unit that does not fit the measurement, so such a value only
    # arrives without it (legacy feeds, plain Observations): written that way here.
    fits = unit in {"kg", "g", "cm", "kg/m2"} and (unit in ("kg", "g")) == (loinc == "29463-7")
    return {
        "resourceType": "Observation",
        **({"meta": {"profile": [GROWTH]}} if fits else {}),
        "status": "final",
        "category": [{"coding": [{"system": canonical.OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": canonical.LOINC_SYSTEM, "code": loinc}]},
        "subject": {"reference": f"Patient/{child}"},
        "effectiveDateTime": on.isoformat(),
        "performer": [{"reference": "Organization/hc"}],
        "valueQuantity": {"value": value, "unit": unit, "system": canonical.UCUM_SYSTEM, "code": unit},
    }


async def _child(
    client: httpx.AsyncClient, id_: str, gender: str, born: date, measures: list[tuple[int, str, float, str]]
) -> None:
    await client.put(
        "Organization/hc", json={"resourceType": "Organization", "id": "hc", "name": "Health centre"}
    )
    reply = await client.put(
        f"Patient/{id_}",
        json={"resourceType": "Patient", "id": id_, "gender": gender, "birthDate": born.isoformat()},
    )
    assert reply.status_code in (200, 201), reply.text
    for days, loinc, value, unit in measures:
        reply = await client.post(
            "Observation",
            json=_measure(id_, born + timedelta(days=days), loinc, value, unit),
            headers=FHIR_JSON,
        )
        assert reply.status_code == 201, reply.text


def _scores(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    growth = sections(bundle)["growth"]
    return {
        s["code"]["coding"][0]["code"]: s
        for s in computed(bundle, growth, "Observation")
        if "valueQuantity" in s
    }


# Published WHO values: boys' weight-for-age at 12 months has median 9.6 kg and -2 SD 7.7 kg (WHO Child
# Growth Standards 2006); girls' length-for-age at 24 months has median 86.4 cm and -3 SD 76.7 cm; girls'
# BMI-for-age at 10 years has median 16.6 and +2 SD 22.6 (WHO Growth Reference 2007).
@pytest.mark.parametrize(
    ("gender", "days", "loinc", "value", "unit", "indicator", "z", "band"),
    [
        ("male", 365, "29463-7", 9.6, "kg", "wfa", 0.0, "wfa-normal"),
        ("male", 365, "29463-7", 7.7, "kg", "wfa", -2.0, None),
        ("male", 365, "29463-7", 7700, "g", "wfa", -2.0, None),
        ("female", 730, "8306-3", 86.4, "cm", "lhfa", 0.0, "lhfa-normal"),
        ("female", 730, "8306-3", 76.7, "cm", "lhfa", -3.0, "lhfa-low"),
    ],
)
def test_zscores_match_published_who_values(gender, days, loinc, value, unit, indicator, z, band) -> None:
    kg_or_cm = value / 1000 if unit == "g" else value
    computed_z = who.zscore(indicator, gender, days, kg_or_cm, recumbent=True if loinc == "8306-3" else None)
    assert computed_z.value == pytest.approx(z, abs=0.08)


def test_bmi_for_age_of_school_children_uses_the_2007_reference() -> None:
    assert who.zscore("bmifa", "female", round(120 * 30.4375), 16.6).value == pytest.approx(0.0, abs=0.05)
    assert who.zscore("bmifa", "female", round(120 * 30.4375), 22.6).value == pytest.approx(2.0, abs=0.08)


async def test_summary_scores_and_reads_known_cases(client: httpx.AsyncClient) -> None:
    born = date.today() - timedelta(days=800)
    # At 730 days: a girl at WHO's -3 SD length (76.7 cm) weighing 9.0 kg: stunted.
    await _child(client, "short", "female", born, [(730, "8306-3", 76.7, "cm"), (730, "29463-7", 9.0, "kg")])
    bundle = (await client.get("Patient/short/$summary")).json()
    scores = _scores(bundle)
    assert scores["lhfa"]["valueQuantity"]["value"] == pytest.approx(-3.0, abs=0.08)
    assert scores["lhfa"]["interpretation"][0]["coding"][0]["code"] == "lhfa-low"
    assert scores["lhfa"]["effectiveDateTime"] == (born + timedelta(days=730)).isoformat()
    assert {"wfa", "lhfa", "wflh"} <= set(scores)
    narrative = sections(bundle)["growth"]["text"]["div"]
    assert "ภาวะเตี้ย" in narrative and "(Stunted (flag))" in narrative


async def test_impossible_measurements_are_flagged_not_interpreted_nor_plotted(
    client: httpx.AsyncClient,
) -> None:
    born = date.today() - timedelta(days=900)
    await _child(
        client,
        "kid",
        "male",
        born,
        [
            (365, "29463-7", 9.6, "kg"),
            (365, "8306-3", 75.7, "cm"),
            (730, "29463-7", 200, "kg"),  # a 2-year-old weighing 200 kg
            (730, "8306-3", 0.88, "cm"),  # a height typed in metres but labelled cm
            (740, "8302-2", 880, "cm"),  # 8.8 metres (a height in a unit of weight is refused on write)
            (760, "29463-7", 12.2, "kg"),
        ],
    )
    bundle = (await client.get("Patient/kid/$summary")).json()
    growth = sections(bundle)["growth"]
    flags = [o for o in computed(bundle, growth, "Observation") if "dataAbsentReason" in o]
    assert len(flags) == 3
    assert {f["interpretation"][0]["coding"][0]["code"] for f in flags} == {"implausible"}
    assert sorted(f["effectiveDateTime"] for f in flags) == sorted(
        (born + timedelta(days=d)).isoformat() for d in (730, 730, 740)
    )
    scores = _scores(bundle)
    assert (
        scores["wfa"]["effectiveDateTime"] == (born + timedelta(days=760)).isoformat()
    )  # the 200 kg is skipped
    assert scores["wfa"]["valueQuantity"]["value"] == pytest.approx(
        who.zscore("wfa", "male", 760, 12.2).value
    )
    assert "ค่าที่ผิดปกติ" in growth["text"]["div"]
    page = await client.get("Patient/kid/$summary", params={"_format": "html"})
    assert page.status_code == 200
    # Plotted: the three plausible measurements (two weights, one length); none of the flagged ones.
    assert page.text.count('class="measurement"') == 3
