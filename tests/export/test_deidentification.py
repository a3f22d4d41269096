"""A researcher's export is de-identified: no name, CID, exact birth date, address line or original id
of the source data appears anywhere in it, and every birth month x sex x district cell holds >= k children."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server import canonical
from fhir_server.interactions import writes
from fhir_server.security.guard import agency_writer
from fhir_server.synthetic import generate
from tests.export.conftest import download, kick_off, open_world, wait_manifest
from tests.security import scene
from tests.security.conftest import World

DOPA = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
_TWINS = 10
_ALL_CLASSES = (
    "demographics",
    "family",
    "growth",
    "development",
    "immunization",
    "health-condition",
    "wellbeing",
    "referral",
    "social-welfare",
)


def _twin(n: int) -> dict[str, Any]:
    """Children alike in birth date, sex and district. Dates move by up to 15 days per child, so born
    mid-month nearly all of them stay in one birth-month cell, which keeps full precision."""
    return {
        "resourceType": "Patient",
        "id": f"twin{n}",
        "name": [{"family": f"Sukjai{n}", "given": [f"Malee{n}"]}],
        "identifier": [{"system": "https://terms.sil-th.org/id/th-cid", "value": _cid(f"110370000{n:03d}")}],
        "telecom": [{"system": "phone", "value": f"08100000{n:02d}"}],
        "gender": "female",
        "birthDate": "2021-06-15",
        "address": [
            {
                "line": [f"{n} Soi Lat Krabang {40 + n}"],
                "extension": [
                    {
                        "url": DOPA,
                        "extension": [
                            {
                                "url": "province",
                                "valueCoding": {
                                    "system": canonical.code_system(canonical.CS_ADMIN_AREA),
                                    "code": "10",
                                },
                            },
                            {
                                "url": "district",
                                "valueCoding": {
                                    "system": canonical.code_system(canonical.CS_ADMIN_AREA),
                                    "code": "1011",
                                },
                            },
                        ],
                    }
                ],
            }
        ],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Malee{n} Sukjai{n}</div>',
        },
    }


def _cid(first12: str) -> str:
    total = sum(int(first12[i]) * (13 - i) for i in range(12))
    return first12 + str((11 - total % 11) % 10)


async def _load(world: World, resources: list[dict[str, Any]]) -> None:
    writer = agency_writer(world.store, "Organization/hosp")
    async with writer.transaction() as tx:
        for resource in resources:
            current = await tx.read(resource["resourceType"], resource["id"])
            await writes.write_version(
                tx, resource["resourceType"], resource["id"], resource, None, current=current, method="PUT"
            )


def _source_secrets(resources: list[dict[str, Any]]) -> dict[str, set[str]]:
    """What must never leave: names, identifiers (CIDs and others), exact birth dates, address lines,
    phone numbers, and every original resource id."""
    found: dict[str, set[str]] = {
        "name": set(),
        "identifier": set(),
        "birthDate": set(),
        "line": set(),
        "telecom": set(),
        "id": set(),
    }

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            if key == "name" or key == "name[]":
                for part in ("family", "text"):
                    if isinstance(node.get(part), str) and len(node[part]) > 2:
                        found["name"].add(node[part])
                for given in node.get("given", []):
                    if len(given) > 2:
                        found["name"].add(given)
            if isinstance(node.get("value"), str) and key not in ("telecom", "telecom[]"):
                found["identifier"].add(node["value"])  # an Identifier, whatever element holds it
            if key in ("telecom", "telecom[]") and isinstance(node.get("value"), str):
                found["telecom"].add(node["value"])
            for k, v in node.items():
                if k == "line":
                    found["line"].update(v)
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key + "[]" if not key.endswith("[]") else key)

    for resource in resources:
        walk(resource)
        found["id"].add(resource["id"])
        if resource["resourceType"] in ("Patient", "RelatedPerson") and isinstance(
            resource.get("birthDate"), str
        ):
            found["birthDate"].add(resource["birthDate"])
    found["name"] = {n for n in found["name"] if n.strip()}
    return found


def _appears(value: str, text: str) -> bool:
    """``value`` in ``text``; a number (a house number, a hospital number) only as a number of its own,
    not as digits inside a hexadecimal pseudonym, where a short one turns up by chance."""
    if not value.isdigit():
        return value in text
    return re.search(rf"(?<![0-9A-Za-z]){value}(?![0-9A-Za-z])", text) is not None


async def _population(world: World) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    households = generate(11, children=18)
    agencies = next(households)
    await _load(world, agencies)
    for household in households:
        resources.extend(household)
    resources.extend(_twin(n) for n in range(_TWINS))
    for n in range(_TWINS):
        obs = scene.observation(f"twin{n}", scene.GROWTH, "weight")
        obs["id"] = f"twin-growth-{n}"
        obs["note"] = [{"text": f"Malee{n} cried; mother Sukjai{n} worried"}]
        obs["extension"] = [
            {
                "url": "https://example.org/fhir/clinic-number",
                "valueIdentifier": {"value": f"HN-TWIN-{n:04d}"},
            },
            {"url": "https://example.org/fhir/remark", "valueString": f"seen with Sukjai{n}"},
        ]
        resources.append(obs)
    await _load(world, resources)
    children = [r["id"] for r in resources if r["resourceType"] == "Patient"]
    for child in children:
        consent = scene.consent(child, agency_types=("research",), purposes=("HRESCH",), classes=_ALL_CLASSES)
        consent["id"] = f"research-{child}"
        await _load(world, [consent])
    return resources


@pytest.fixture
async def research_world(tmp_path: Path) -> Any:
    async for world in open_world(tmp_path):
        s = await scene.build(world)
        yield world, s


async def test_nothing_identifying_leaves_and_every_cell_holds_k_children(research_world: Any) -> None:
    world, _ = research_world
    source = await _population(world)
    researcher = await world.caller("study", "Organization/research", "researcher")
    manifest = await wait_manifest(researcher, await kick_off(researcher, "Patient/$export"))
    exported = await download(researcher, manifest)
    kept = [p.name for p in world.app.state.settings.export_path().rglob("*") if p.name.startswith(".")]
    assert kept == []  # the job's child index (real ids) is gone once the export is complete
    text = b"\n".join(orjson.dumps(r) for rs in exported.values() for r in rs).decode()
    secrets = _source_secrets(source)
    assert secrets["name"] and secrets["identifier"] and secrets["line"] and secrets["birthDate"]
    for kind, values in secrets.items():
        leaked = sorted(v for v in values if _appears(v, text))
        assert not leaked, (kind, leaked[:5])
    # no CID-shaped number at all, whatever its element (pseudonyms are hex: digits inside them are no number)
    assert not [m for m in re.findall(r"(?<![0-9a-f])\d{13}(?![0-9a-f])", text) if _cid(m[:12]) == m]
    patients = exported["Patient"]
    assert len(patients) >= 5  # the twins' cell keeps full precision
    for patient in patients:
        assert set(patient) <= {
            "resourceType",
            "id",
            "meta",
            "active",
            "gender",
            "birthDate",
            "address",
            "deceasedBoolean",
            "deceasedDateTime",
            "managingOrganization",
        }
        assert re.fullmatch(r"\d{4}(-\d{2})?", patient.get("birthDate", "2000"))
        assert {"PSEUDED", "REDACTED", "HRESCH"} <= {c["code"] for c in patient["meta"]["security"]}
    for resources in exported.values():
        for resource in resources:
            assert {"PSEUDED", "REDACTED"} <= {c["code"] for c in resource["meta"]["security"]}
            assert "text" not in resource and "note" not in resource and "identifier" not in resource
    # an independent k-anonymity check on what was exported: birth date (as exported) x sex x area
    cells = Counter((p.get("birthDate"), p.get("gender"), _area(p)) for p in patients)
    assert min(cells.values()) >= 5, cells
    ext = manifest["extension"]["https://termtem.org/fhir/export/deidentification"]
    assert ext["k"] == 5
    assert ext["suppressedChildren"] + len(patients) == len(
        [r for r in source if r["resourceType"] == "Patient"]
    )
    # every reference points into the export's own pseudonyms (children) or is pseudonymous
    ids = {p["id"] for p in patients}
    for obs in exported.get("Observation", []):
        subject = obs["subject"]["reference"].split("/", 1)[1]
        assert subject in ids or ext["suppressedChildren"] == 0 or subject not in secrets["id"]
        assert subject not in secrets["id"]


def _area(patient: dict[str, Any]) -> tuple[str, ...]:
    for address in patient.get("address", []):
        for ext in address.get("extension", []):
            if ext["url"] == DOPA:
                return tuple(sorted(p["valueCoding"]["code"] for p in ext["extension"]))
    return ()


async def test_pseudonyms_are_stable_within_a_project_and_unlinkable_between_projects(
    research_world: Any,
) -> None:
    world, _ = research_world
    await _population(world)
    first = await world.caller("study", "Organization/research", "researcher")
    again = await wait_manifest(first, await kick_off(first, "Patient/$export?_type=Patient"))
    once = await wait_manifest(first, await kick_off(first, "Patient/$export?_type=Patient"))
    a = {p["id"] for p in (await download(first, again))["Patient"]}
    b = {p["id"] for p in (await download(first, once))["Patient"]}
    assert a == b and a
    # another client of the same agency (project) shares them; another project does not
    from fhir_server.security.clients import ClientRecord, ClientRegistry

    await world.register("study-b", "Organization/research", "researcher")
    registry = ClientRegistry(world.store)
    record = await registry.get("study-b")
    assert record is not None
    await registry.add(ClientRecord(**{**record.__dict__, "project": "dengue-2026"}), replace=True)
    other = await world.caller("study-c", "Organization/research", "researcher")
    reply = await world.token_reply("study-b", world.tmp / "study-b.jwk.json", "system/*.rs")
    other_project = type(other)(
        world.http, "study-b", world.tmp / "study-b.jwk.json", reply.json()["access_token"]
    )
    c = {
        p["id"]
        for p in (
            await download(
                other, await wait_manifest(other, await kick_off(other, "Patient/$export?_type=Patient"))
            )
        )["Patient"]
    }
    d = {
        p["id"]
        for p in (
            await download(
                other_project,
                await wait_manifest(
                    other_project, await kick_off(other_project, "Patient/$export?_type=Patient")
                ),
            )
        )["Patient"]
    }
    assert c == a
    assert d and not (d & a)


async def test_researchers_get_only_consented_children_and_classes(research_world: Any) -> None:
    world, s = research_world
    researcher = await world.caller("study", "Organization/research", "researcher")
    # child1: research consent for demographics and growth only; child2: none
    await s.hospital.create(
        scene.consent(
            "child1", agency_types=("research",), purposes=("HRESCH",), classes=("demographics", "growth")
        )
    )
    manifest = await wait_manifest(researcher, await kick_off(researcher, "$export"))
    ext = manifest["extension"]["https://termtem.org/fhir/export/deidentification"]
    # one consented child is alone in its cell: suppressed, with its growth Observation and Consents
    assert manifest["output"] == []
    assert ext["suppressedChildren"] == 1 and ext["suppressedResources"] == 4
    low_k = None
    async for low_k in open_world(world.tmp / "k1", export_k=1):
        t = await scene.build(low_k)
        await t.hospital.create(
            scene.consent(
                "child1", agency_types=("research",), purposes=("HRESCH",), classes=("demographics", "growth")
            )
        )
        study = await low_k.caller("study", "Organization/research", "researcher")
        files = await download(study, await wait_manifest(study, await kick_off(study, "$export")))
        # Patient and Consents (demographics) and the growth Observation; not development, not child2
        assert {t: len(v) for t, v in files.items()} == {"Patient": 1, "Consent": 2, "Observation": 1}
        assert files["Observation"][0]["meta"]["profile"] == [scene.GROWTH]
