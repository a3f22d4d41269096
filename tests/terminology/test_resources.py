"""The shipped terminology files: well-formed, bilingual, ids and URLs from fhir_server.canonical."""

from __future__ import annotations

import re

import orjson
import pytest

from fhir_server import canonical
from fhir_server.terminology import shipped_resources, terminology_dir

TERMINOLOGY = terminology_dir()
THAI = re.compile(r"[\u0E00-\u0E7F]")
FILES = sorted(TERMINOLOGY.glob("*.json"))


def _concepts(concepts: list[dict]) -> list[dict]:
    out = []
    for c in concepts:
        out.append(c)
        out.extend(_concepts(c.get("concept", [])))
    return out


def test_folder_holds_one_resource_per_file_named_after_it() -> None:
    assert len(FILES) > 40
    for path in FILES:
        resource = orjson.loads(path.read_bytes())
        assert path.name == f"{resource['resourceType']}-{resource['id']}.json"
        builder = {
            "CodeSystem": canonical.code_system,
            "ValueSet": canonical.value_set,
            "ConceptMap": canonical.concept_map,
        }[resource["resourceType"]]
        assert resource["url"] == builder(resource["id"])
        for key in ("name", "version", "status"):
            assert resource.get(key), (path.name, key)


def test_every_code_system_id_in_canonical_is_shipped() -> None:
    shipped = {(r["resourceType"], r["id"]) for r in shipped_resources()}
    ids = [v for k, v in vars(canonical).items() if k.startswith("CS_")]
    assert len(ids) >= 24
    for id_ in ids:
        assert ("CodeSystem", id_) in shipped, id_
    for k, v in vars(canonical).items():
        if k.startswith("VS_"):
            assert ("ValueSet", v) in shipped, k
        if k.startswith("CM_"):
            assert ("ConceptMap", v) in shipped, k


@pytest.mark.parametrize(
    "resource", [r for r in shipped_resources() if r["resourceType"] == "CodeSystem"], ids=lambda r: r["id"]
)
def test_every_concept_has_thai_display_and_english_designation(resource: dict) -> None:
    assert resource["language"] == "th"
    concepts = _concepts(resource["concept"])
    assert concepts
    assert resource["count"] == len(concepts)
    for concept in concepts:
        assert THAI.search(concept["display"]), (resource["id"], concept["code"])
        english = [d for d in concept.get("designation", []) if d.get("language") == "en"]
        assert english and english[0]["value"] and not THAI.search(english[0]["value"]), concept["code"]


def test_listed_value_set_concepts_are_bilingual_too() -> None:
    for resource in shipped_resources():
        if resource["resourceType"] != "ValueSet":
            continue
        for include in resource["compose"]["include"]:
            for concept in include.get("concept", []):
                assert THAI.search(concept["display"])
                assert any(d["language"] == "en" for d in concept["designation"])


def test_vaccine_codes_keep_three_characters() -> None:
    cs = next(
        r
        for r in shipped_resources()
        if r["id"] == canonical.CS_MOPH_VACCINE and r["resourceType"] == "CodeSystem"
    )
    codes = [c["code"] for c in cs["concept"]]
    assert "010" in codes and "10" not in codes
    assert all(len(code) == 3 for code in codes)


def test_specialpp_has_dspm_blocks_and_tdas_codes() -> None:
    cs = next(
        r
        for r in shipped_resources()
        if r["id"] == canonical.CS_MOPH_SPECIALPP and r["resourceType"] == "CodeSystem"
    )
    codes = {c["code"] for c in cs["concept"]}
    assert {"1B200", "1B249", "1B260", "1B261", "1B262", "1B270", "1B275", "1B800", "1B814"} <= codes
    assert "1B208" not in codes  # digit 8 is not defined in our sources
    assert cs["content"] == "fragment"
