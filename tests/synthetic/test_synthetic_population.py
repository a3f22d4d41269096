"""The generated population: deterministic, valid, consistent, and with the configured rates."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import geothai
import pytest

from fhir_server import canonical
from fhir_server.synthetic import PopulationConfig, generate, write_ndjson, write_transaction_bundles
from fhir_server.terminology import terminology_dir
from fhir_server.validation.structural import validate_structure

TERMINOLOGY = terminology_dir()


def _is_child(resource: dict[str, Any]) -> bool:
    """A child's Patient (the mothers' Patients, made by the 43-file mapper, carry the centre's PID)."""
    identifiers = resource.get("identifier", [])
    types = [c.get("code") for i in identifiers for c in i.get("type", {}).get("coding", [])]
    return resource["resourceType"] == "Patient" and "pid" not in types


def _checksum_ok(cid: str) -> bool:
    """The DOPA mod-11 rule, written independently of the generator."""
    if len(cid) != 13 or not cid.isdigit():
        return False
    s = sum(int(cid[i]) * (13 - i) for i in range(12))
    return (11 - s % 11) % 10 == int(cid[12])


def _walk(value: Any, key: str = "") -> Any:
    """Every (key, value) pair in a JSON tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, key)


def _codings(value: Any) -> list[dict[str, Any]]:
    """Every Coding-shaped object in a JSON tree."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "system" in item and "code" in item:
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def test_checksum_helper_agrees_with_known_ids() -> None:
    assert _checksum_ok("1103702488992") and _checksum_ok("2650591524440")
    assert not _checksum_ok("1604802401857")


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 9), ("b", 9), ("c", 10)):
        write_ndjson(tmp_path / name, seed, 40)
        write_transaction_bundles(tmp_path / f"{name}-tx", seed, 40, households_per_bundle=5)
    for suffix in ("", "-tx"):
        a, b, c = (tmp_path / f"{n}{suffix}" for n in "abc")
        names = sorted(p.name for p in a.iterdir())
        assert names == sorted(p.name for p in b.iterdir())
        assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
        assert any((a / n).read_bytes() != (c / n).read_bytes() for n in names if (c / n).exists())


def test_every_resource_type_is_structurally_valid(resources: list[dict[str, Any]]) -> None:
    seen: Counter[str] = Counter()
    for resource in resources:
        kind = resource["resourceType"]
        if seen[kind] >= 250:
            continue
        seen[kind] += 1
        errors = [i for i in validate_structure(resource) if i["severity"] in ("error", "fatal")]
        assert errors == [], (resource, errors)
    expected = {
        "Organization",
        "Patient",
        "RelatedPerson",
        "Observation",
        "Immunization",
        "ServiceRequest",
        "Task",
        "Consent",
    }
    assert expected <= set(seen)


def test_citizen_ids_pass_the_checksum_and_are_unique_per_person(resources: list[dict[str, Any]]) -> None:
    patients: list[str] = []
    for resource in resources:
        for ident in resource.get("identifier", []):
            if ident.get("system") == canonical.CID_SYSTEM:
                assert _checksum_ok(ident["value"]), ident
                if resource["resourceType"] == "Patient":
                    patients.append(ident["value"])
            if ident.get("system") == canonical.GCODE_SYSTEM:
                assert ident["value"][0] == "G" and ident["value"][1:].isdigit() and len(ident["value"]) == 13
    assert len(patients) > 250 and len(set(patients)) == len(patients)


def test_every_reference_resolves_in_ndjson(resources: list[dict[str, Any]]) -> None:
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}
    references = [v for r in resources for k, v in _walk(r) if k == "reference" and isinstance(v, str)]
    assert len(references) > len(resources)
    dangling = [ref for ref in references if ref not in known]
    assert dangling == []


def test_every_reference_resolves_in_transaction_bundles(tmp_path: Path) -> None:
    summary = write_transaction_bundles(tmp_path, 3, 60, households_per_bundle=4)
    files = sorted(tmp_path.glob("bundle-*.json"))
    assert files == sorted(summary.files) and len(files) > 2
    agencies = json.loads(files[0].read_bytes())
    assert agencies["type"] == "transaction"
    organizations = set()
    for entry in agencies["entry"]:
        assert entry["request"] == {"method": "PUT", "url": f"Organization/{entry['resource']['id']}"}
        organizations.add(entry["request"]["url"])
    total = len(agencies["entry"])
    for path in files[1:]:
        bundle = json.loads(path.read_bytes())
        full_urls = {e["fullUrl"] for e in bundle["entry"]}
        total += len(bundle["entry"])
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:") and "id" not in entry["resource"]
            assert entry["request"] == {"method": "POST", "url": entry["resource"]["resourceType"]}
            for key, ref in _walk(entry["resource"]):
                if key == "reference" and isinstance(ref, str):
                    assert ref in full_urls or ref in organizations, ref
    assert total == summary.resources


def test_codes_in_our_code_systems_exist(resources: list[dict[str, Any]]) -> None:
    shipped: dict[str, dict[str, str]] = {}
    for path in TERMINOLOGY.glob("CodeSystem-*.json"):
        cs = json.loads(path.read_text(encoding="utf-8"))
        stack, codes = list(cs.get("concept", [])), {}
        while stack:
            concept = stack.pop()
            codes[concept["code"]] = concept.get("display", "")
            stack.extend(concept.get("concept", []))
        shipped[cs["url"]] = codes
    admin = canonical.code_system(canonical.CS_ADMIN_AREA)
    checked = 0
    for resource in resources:
        for c in _codings(resource):
            if c["system"] == admin:
                area = (
                    geothai.subdistrict(c["code"])
                    or geothai.district(c["code"])
                    or geothai.province(c["code"])
                )
                # The mapper (mothers' addresses) writes the codes without a display.
                assert area is not None and area.name_th == c.get("display", area.name_th), c
            elif c["system"].startswith(canonical.BASE):
                assert c["code"] in shipped[c["system"]], c
                if "display" in c:
                    assert shipped[c["system"]][c["code"]] == c["display"], c
                checked += 1
    assert checked > 10_000


def test_name_prefixes_follow_sex_and_age(resources: list[dict[str, Any]]) -> None:
    expected = {("male", True): "ด.ช.", ("female", True): "ด.ญ.", ("male", False): "นาย"}
    for patient in (r for r in resources if _is_child(r)):
        age = (date(2026, 1, 1) - date.fromisoformat(patient["birthDate"])).days // 365
        thai = patient["name"][0]
        want = expected.get((patient["gender"], age < 15), "น.ส.")
        assert thai["prefix"] == [want], (age, patient["gender"], thai)
        ext = {e["url"]: e for e in thai["extension"]}
        assert (
            ext[canonical.structure_definition(canonical.EXT_NAME_PREFIX)]["valueCoding"]["display"] == want
        )


def test_addresses_use_real_bangkok_codes(resources: list[dict[str, Any]]) -> None:
    for patient in (r for r in resources if _is_child(r) or r["resourceType"] == "Organization"):
        parts = {
            e["url"]: e["valueCoding"]["code"] for e in patient["address"][0]["extension"][0]["extension"]
        }
        sub = geothai.subdistrict(parts["subdistrict"])
        assert sub is not None and sub.district_code == parts["district"] and parts["province"] == "10"
        assert patient["address"][0]["postalCode"] in sub.postal_codes


def test_consent_grantor_follows_pdpa_age_rule(resources: list[dict[str, Any]]) -> None:
    births = {
        r["id"]: date.fromisoformat(r["birthDate"]) for r in resources if r["resourceType"] == "Patient"
    }
    consents = [r for r in resources if r["resourceType"] == "Consent"]
    assert len(consents) > 200
    kinds = set()
    for c in consents:
        signed = date.fromisoformat(c["dateTime"][:10])
        age = (signed - births[c["patient"]["reference"].split("/")[1]]).days / 365.25
        performers = [p["reference"].split("/")[0] for p in c["performer"]]
        assert performers[0] == "RelatedPerson"
        assert performers == (["RelatedPerson"] if age < 11 else ["RelatedPerson", "Patient"]), (
            age,
            performers,
        )
        kinds.add(tuple(performers))
    assert len(kinds) == 2


def test_every_task_state_appears_with_a_matching_request(tmp_path: Path) -> None:
    tasks: Counter[str] = Counter()
    requests: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for batch in generate(5, 1500):
        for r in batch:
            if r["resourceType"] == "ServiceRequest":
                requests[f"ServiceRequest/{r['id']}"] = r["status"]
            elif r["resourceType"] == "Task":
                tasks[r["status"]] += 1
                pairs.append((r["status"], r["focus"]["reference"]))
    states = {
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "failed",
    }
    assert states <= set(tasks)
    matching = {"completed": "completed", "rejected": "revoked", "cancelled": "revoked", "draft": "draft"}
    for status, focus in pairs:
        assert requests[focus] == matching.get(status, requests[focus])
        if status in ("requested", "received", "accepted", "in-progress"):
            assert requests[focus] == "active"


def _rates(config: PopulationConfig, children: int) -> tuple[float, float]:
    """(share of first screenings with a suspected delay, share of stateless children)."""
    first: dict[tuple[str, str], tuple[str, str]] = {}
    patients = stateless = 0
    dspm = canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING)
    for batch in generate(77, children, config=config):
        for r in batch:
            if _is_child(r):
                patients += 1
                nation = [e for e in r.get("extension", []) if e["url"].endswith("patient-nationality")]
                thai = (
                    nation and nation[0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "099"
                )
                stateless += not thai
            elif r.get("meta", {}).get("profile") == [dspm]:
                band = r["extension"][0]["valueCoding"]["code"]
                key = (r["subject"]["reference"], band)
                result = r["valueCodeableConcept"]["coding"][0]["code"]
                if key not in first or r["effectiveDateTime"] < first[key][0]:
                    first[key] = (r["effectiveDateTime"], result)
    suspected = sum(1 for _, result in first.values() if result.startswith("suspected-delay"))
    assert patients == children
    return suspected / len(first), stateless / patients


def test_rates_are_within_the_configured_ranges() -> None:
    suspected, stateless = _rates(PopulationConfig(), 3000)
    assert 0.18 <= suspected <= 0.26
    assert 0.015 <= stateless <= 0.07
    suspected, stateless = _rates(PopulationConfig(suspected_delay_rate=0.5, stateless_rate=0.2), 1500)
    assert 0.44 <= suspected <= 0.56
    assert 0.14 <= stateless <= 0.26


def test_generation_is_lazy_and_memory_does_not_grow() -> None:
    stream = generate(1, 10**9)
    agencies = next(stream)
    household = next(stream)
    assert all(r["resourceType"] == "Organization" for r in agencies)
    assert 1 <= sum(_is_child(r) for r in household) <= 3

    def peak(children: int) -> int:
        tracemalloc.start()
        for _ in generate(1, children):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(60), peak(600)
    assert large < small * 1.5


def test_size_targets() -> None:
    batches = list(generate(4, resources=5000))
    total = sum(len(b) for b in batches)
    assert 5000 <= total < 5000 + len(batches[-1]) + 1
    assert sum(len(b) for b in batches[:-1]) < 5000
    children = sum(_is_child(r) for b in generate(4, 37) for r in b)
    assert children == 37
    with pytest.raises(ValueError):
        next(generate(4, -1))


def test_every_child_record_has_its_parts(population: list[list[dict[str, Any]]]) -> None:
    by_child: dict[str, Counter[str]] = defaultdict(Counter)
    children = {f"Patient/{r['id']}" for batch in population for r in batch if _is_child(r)}
    for batch in population[1:]:
        for r in batch:
            subject = (r.get("subject") or r.get("patient") or {}).get("reference")
            if subject:
                code = r.get("code", {}).get("coding", [{}])[0].get("code", "")
                by_child[subject][f"{r['resourceType']}:{code}"] += 1
    assert len(children) == 300 and children <= set(by_child)
    for counts in (by_child[child] for child in children):
        assert counts["Observation:8339-4"] == 1  # birth weight
        assert counts["RelatedPerson:"] >= 1
    weights = sum(c["Observation:29463-7"] for c in by_child.values())
    assert weights > 300 * 5
