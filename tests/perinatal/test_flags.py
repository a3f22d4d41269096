"""The risk rules as pure functions: each flag holds exactly at its threshold, from the data it names."""

from __future__ import annotations

from datetime import date

from fhir_server.perinatal import flags
from fhir_server.perinatal.rules import rules
from tests.perinatal import records


def _weight(grams: float, unit: str = "g") -> dict:
    obs = records.birth_weight(grams)
    obs["valueQuantity"].update({"unit": unit, "code": unit})
    return obs


def test_thresholds_come_from_the_shipped_rules() -> None:
    limits = rules()
    assert (limits.low_birth_weight_g, limits.preterm_weeks, limits.teenage_age) == (2500, 37, 20)
    assert (limits.first_anc_weeks, limits.recommended_anc_visits) == (12, 5)
    assert limits.follow_up_for == {"low-birth-weight", "birth-asphyxia"} and limits.follow_up_tool == "DAIM"


def test_low_birth_weight_is_under_2500_grams_in_g_or_kg() -> None:
    assert flags.newborn_flag(_weight(2499), "Observation/1")[1].code == "low-birth-weight"
    assert flags.newborn_flag(_weight(2.4, "kg"), "Observation/1")[1].derived_from == ("Observation/1",)
    assert flags.newborn_flag(_weight(2500), "Observation/1") == ("low-birth-weight", None)
    retracted = {**_weight(1800), "status": "entered-in-error"}
    assert flags.newborn_flag(retracted, "Observation/1") == ("low-birth-weight", None)


def test_preterm_and_asphyxia() -> None:
    ga = records.birth_weight(0)
    ga["code"]["coding"][0]["code"] = "76516-4"
    ga["valueQuantity"] = {"value": 36, "unit": "wk", "system": records.UCUM, "code": "wk"}
    assert flags.newborn_flag(ga, "Observation/g")[1].code == "preterm"
    ga["valueQuantity"]["value"] = 37
    assert flags.newborn_flag(ga, "Observation/g") == ("preterm", None)
    apgar = {**ga, "code": {"coding": [{"system": "http://loinc.org", "code": "9272-6"}]},
             "valueQuantity": {"value": 6, "system": records.UCUM, "code": "{score}"}}
    assert flags.newborn_flag(apgar, "Observation/a")[1].code == "birth-asphyxia"
    apgar["valueQuantity"]["value"] = 7
    assert flags.newborn_flag(apgar, "Observation/a") == ("birth-asphyxia", None)
    assert flags.newborn_flag({"resourceType": "Observation", "code": {}}, "Observation/x") is None


def _visits(*pairs: tuple[str, int | None]) -> list[flags.Visit]:
    return [flags.Visit(f"Encounter/v{i}", date.fromisoformat(d), w) for i, (d, w) in enumerate(pairs)]


def test_pregnancy_flags() -> None:
    episode = {**records.episode(), "id": "e1"}
    mother = {**records.mother("2006-08-01"), "id": "m1"}  # 18 on 2025-02-18
    delivery = {**records.delivery(), "id": "d1"}
    visits = _visits(("2024-08-26", 14), ("2024-09-30", None))
    found = flags.pregnancy_flags(episode, mother, visits, [delivery])
    assert set(found) == {"teenage-mother", "late-first-anc", "few-anc-visits"}
    assert found["teenage-mother"].derived_from == ("Procedure/d1", "Patient/m1")
    assert found["late-first-anc"].on == "2024-08-26"
    # A 20th birthday on the delivery day is not teenage; a first visit at 12 weeks is on time.
    twenty = {**mother, "birthDate": "2005-02-18"}
    on_time = _visits(("2024-08-12", 12), ("2024-09-09", 16), ("2024-10-07", 20), ("2024-11-04", 24),
                      ("2024-12-02", 28))
    assert flags.pregnancy_flags(episode, twenty, on_time, [delivery]) == {}
    # Without a visit's gestational age, the LMP gives it: 2024-05-20 to 2024-08-05 is 11 weeks.
    assert "late-first-anc" not in flags.pregnancy_flags(episode, twenty, _visits(("2024-08-05", None)), [])
    # Too few visits only once the pregnancy has ended, and only with visits on record.
    ongoing = {**episode, "status": "active", "period": {"start": "2024-05-20"}}
    assert "few-anc-visits" not in flags.pregnancy_flags(ongoing, twenty, _visits(("2024-08-05", 11)), [])
    assert flags.pregnancy_flags(episode, twenty, [], [delivery]) == {}
