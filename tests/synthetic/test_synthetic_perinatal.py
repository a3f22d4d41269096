"""The generator's pregnancies, births and newborn care: valid against the Thai perinatal profiles, the
same resources the 43-file mapper makes from the generated tables, consistent with the children, and
with realistic shares (low birth weight, preterm, late first antenatal visit, twins)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fhir_server import canonical
from fhir_server.mapping import MappedRecord, map_files
from fhir_server.synthetic import generate, write_moph43
from fhir_server.synthetic.perinatal import WINDOW_YEARS
from fhir_server.validation.validator import validate

SEED = 2024
PERINATAL = {
    canonical.structure_definition(p): p
    for p in (
        canonical.PROFILE_PREGNANCY,
        canonical.PROFILE_ANTENATAL_VISIT,
        canonical.PROFILE_ANTENATAL_SCREENING,
        canonical.PROFILE_DELIVERY,
        canonical.PROFILE_BIRTH,
        canonical.PROFILE_BIRTH_OBSERVATION,
        canonical.PROFILE_PERINATAL_VISIT,
        canonical.PROFILE_NEWBORN_VITAMIN_K,
    )
}
PERSON_RECORD = canonical.structure_definition(canonical.EXT_PERSON_RECORD)
LOINC = "http://loinc.org"


def _profile(resource: dict[str, Any]) -> str:
    return ",".join(resource.get("meta", {}).get("profile", []))


def _code(resource: dict[str, Any]) -> str:
    return next((c["code"] for c in resource.get("code", {}).get("coding", [])), "")


def _is_mother(resource: dict[str, Any]) -> bool:
    identifiers = resource.get("identifier", [])
    return resource["resourceType"] == "Patient" and any(
        c.get("code") == "pid" for i in identifiers for c in i.get("type", {}).get("coding", [])
    )


@pytest.fixture(scope="module")
def big() -> list[list[dict[str, Any]]]:
    """1,200 children: enough births for the shares and for twins."""
    return list(generate(SEED, 1200))


def test_every_perinatal_resource_passes_its_profile(resources: list[dict[str, Any]]) -> None:
    by_reference = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    checked: Counter[str] = Counter()
    failures = []
    for resource in resources:
        profile = _profile(resource)
        if profile not in PERINATAL and not _is_mother(resource):
            continue
        checked[PERINATAL.get(profile, "mother")] += 1
        issues = validate(resource, resolver=by_reference.get)
        errors = [i["diagnostics"] for i in issues if i["severity"] in ("error", "fatal")]
        if errors:
            failures.append((resource["resourceType"], profile, errors))
    assert failures[:3] == []
    assert set(checked) == {*PERINATAL.values(), "mother"}, checked
    assert checked[canonical.PROFILE_BIRTH] >= 40


def test_births_fit_the_children_and_link_to_their_mothers(resources: list[dict[str, Any]]) -> None:
    by_reference = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    children = {
        f"Patient/{r['id']}": r for r in resources if r["resourceType"] == "Patient" and not _is_mother(r)
    }
    births = {
        r["subject"]["reference"]: r for r in resources if _profile(r).endswith("/" + canonical.PROFILE_BIRTH)
    }
    weights: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        if r["resourceType"] == "Observation" and _code(r) == "8339-4":
            weights.setdefault(r["subject"]["reference"], []).append(r)
    mothers_of = {
        r["patient"]["reference"]: r["extension"][0]["valueReference"]["reference"]
        for r in resources
        if r["resourceType"] == "RelatedPerson" and r.get("extension", [{}])[0].get("url") == PERSON_RECORD
    }
    reference = date(2026, 1, 1)
    young_with_mother = {
        ref
        for ref, child in children.items()
        if (reference - date.fromisoformat(child["birthDate"])).days < WINDOW_YEARS * 365
        and any(
            r["resourceType"] == "RelatedPerson"
            and r["patient"]["reference"] == ref
            and r["relationship"][0]["coding"][0]["code"] == "MTH"
            for r in resources
        )
    }
    assert set(births) == young_with_mother == set(mothers_of) and len(births) >= 40
    for ref, birth in births.items():
        child = children[ref]
        assert birth["period"]["start"][:10] == child["birthDate"]
        (weight,) = weights[ref]  # one birth weight: the birth record's, not a second one
        assert _profile(weight).endswith(canonical.PROFILE_BIRTH_OBSERVATION)
        assert weight["encounter"]["reference"] == f"Encounter/{birth['id']}"
        mother = by_reference[mothers_of[ref]]
        assert mother["gender"] == "female"
        assert mother["managingOrganization"] == child["managingOrganization"]
        episode = by_reference[birth["episodeOfCare"][0]["reference"]]
        assert episode["patient"]["reference"] == mothers_of[ref]
        assert episode["period"]["end"] == child["birthDate"] and episode["status"] == "finished"
        age = (date.fromisoformat(child["birthDate"]) - date.fromisoformat(mother["birthDate"])).days / 365.25
        assert 15 <= age < 45, age
    # Older children keep the plain birth weight of before.
    for ref in set(children) - young_with_mother:
        (weight,) = weights[ref]
        assert "meta" not in weight


def test_shares_are_realistic(big: list[list[dict[str, Any]]]) -> None:
    everything = [r for household in big[1:] for r in household]
    grams = [r["valueQuantity"]["value"] for r in everything if _code(r) == "8339-4"]
    low = sum(g < 2500 for g in grams) / len(grams)
    assert 0.07 <= low <= 0.13, low  # Thailand: about 9-11 % of births under 2,500 g
    weeks = {
        r["subject"]["reference"]: r["valueQuantity"]["value"] for r in everything if _code(r) == "76516-4"
    }
    born = {
        r["subject"]["reference"]: r["valueQuantity"]["value"]
        for r in everything
        if _code(r) == "8339-4" and r["subject"]["reference"] in weeks
    }
    preterm = sum(w < 37 for w in weeks.values()) / len(weeks)
    assert 0.06 <= preterm <= 0.2, preterm
    # Gestational age fits the weight: very small babies are preterm, big ones are not.
    assert all(weeks[c] <= 35 for c, g in born.items() if g < 2000)
    assert all(weeks[c] >= 34 for c, g in born.items() if g >= 2500)
    visits: dict[str, list[float]] = {}
    for r in everything:
        if _profile(r).endswith(canonical.PROFILE_ANTENATAL_VISIT):
            ga = next(e["valueQuantity"]["value"] for e in r["extension"] if "gestational" in e["url"])
            visits.setdefault(r["episodeOfCare"][0]["reference"], []).append(ga)
    late = sum(min(v) > 12 for v in visits.values()) / len(visits)
    few = sum(len(v) < 5 for v in visits.values()) / len(visits)
    assert 0.1 <= late <= 0.35 and 0.15 <= few <= 0.6, (late, few)
    # Twins: two children of one household born the same day share one pregnancy.
    birth_profile = canonical.structure_definition(canonical.PROFILE_BIRTH)
    pregnancies = Counter(
        r["episodeOfCare"][0]["reference"] for r in everything if _profile(r) == birth_profile
    )
    assert 1 <= sum(n == 2 for n in pregnancies.values()) <= 15 and max(pregnancies.values()) == 2


def _shape(value: Any, urns: dict[str, str]) -> Any:
    """A resource without its ids and with every reference reduced to the type it points at."""
    if isinstance(value, dict):
        return tuple(
            sorted(
                (k, urns.get(v) or v.split("/")[0].split("?")[0] if k == "reference" else _shape(v, urns))
                for k, v in value.items()
                if k != "id"
            )
        )
    if isinstance(value, list):
        return tuple(_shape(v, urns) for v in value)
    return value


def test_the_fhir_is_what_the_mapper_makes_of_the_generated_tables(tmp_path: Path) -> None:
    write_moph43(tmp_path, SEED, 150)
    mapped: Counter[Any] = Counter()
    for item in map_files("moph43", [tmp_path]):
        assert isinstance(item, MappedRecord), item
        assert item.warnings == []
        urns = {e["fullUrl"]: e["resource"]["resourceType"] for e in item.entries}
        if item.table in ("PRENATAL", "ANC", "LABOR", "POSTNATAL", "NEWBORN", "NEWBORNCARE"):
            for resource in item.resources:
                if resource["resourceType"] != "RelatedPerson":
                    mapped[_shape(resource, urns)] += 1
    generated: Counter[Any] = Counter(
        _shape(r, {})
        for batch in generate(SEED, 150)
        for r in batch
        if r["resourceType"] != "Patient"
        and any(i.get("system") == canonical.LEGACY_RECORD_SYSTEM for i in r.get("identifier", []))
    )
    assert sum(generated.values()) > 300
    assert generated == mapped
