"""``termtem generate --format moph43`` writes 43-file tables that import over HTTP with auth on: the
births and newborns arrive linked to their mothers, the risk flags are derived, a re-import changes
nothing. The FHIR form of the same seed holds the same mothers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from fhir_server import canonical
from fhir_server.cli import app
from fhir_server.synthetic import generate
from tests.perinatal.support import agencies, import_moph43, seen, versions
from tests.security.conftest import World, world  # noqa: F401  (fixture)

runner = CliRunner()
RISK = canonical.code_system(canonical.CS_PERINATAL_RISK)
PERSON_RECORD = canonical.structure_definition(canonical.EXT_PERSON_RECORD)
SEED, CHILDREN = 11, 45


def _rows(folder: Path, table: str) -> list[dict[str, str]]:
    with (folder / f"{table}.txt").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="|"))


async def test_generated_tables_import_linked_and_flagged_and_idempotent(
    world: World, tmp_path: Path  # noqa: F811
) -> None:
    tables, fhir = tmp_path / "moph43", tmp_path / "ndjson"
    for form, out in (("moph43", tables), ("ndjson", fhir)):
        arguments = ["generate", "--children", str(CHILDREN), "--seed", str(SEED), "--format", form]
        result = runner.invoke(app, [*arguments, "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert f"{CHILDREN} children" in result.output
    newborns = _rows(tables, "NEWBORN")
    persons = {(r["HOSPCODE"], r["PID"]): r for r in _rows(tables, "PERSON")}
    mothers = {persons[(n["HOSPCODE"], n["MPID"])]["CID"] for n in newborns} - {""}
    # The FHIR form of the same seed has the same mothers (by CID) as Patients.
    fhir_patients = [json.loads(line) for line in (fhir / "Patient.ndjson").read_text().splitlines()]
    fhir_cids = {
        i["value"] for p in fhir_patients for i in p["identifier"] if i["system"] == canonical.CID_SYSTEM
    }
    assert len(newborns) >= 8 and mothers and mothers <= fhir_cids

    (centre,) = await agencies(world, "hc")
    await import_moph43(centre, tables, 200)

    births = await seen(centre, f"Encounter?type={canonical.code_system(canonical.CS_PERINATAL_EVENT)}|birth")
    assert len(births) == len(newborns)
    episodes = {f"EpisodeOfCare/{e['id']}": e for e in await seen(centre, "EpisodeOfCare")}
    assert len(episodes) == len(_rows(tables, "PRENATAL"))
    patients = {f"Patient/{p['id']}": p for p in await seen(centre, "Patient")}
    assert len(patients) == len(persons)
    links = {
        r["patient"]["reference"]: r["extension"][0]["valueReference"]["reference"]
        for r in await seen(centre, "RelatedPerson")
        if r.get("extension") and r["extension"][0]["url"] == PERSON_RECORD
    }
    for birth in births:
        child = birth["subject"]["reference"]
        mother = episodes[birth["episodeOfCare"][0]["reference"]]["patient"]["reference"]
        assert links[child] == mother and patients[mother]["gender"] == "female"

    # The flags the rows call for, no more and no fewer.
    expected = {
        "low-birth-weight": sum(int(n["BWEIGHT"]) < 2500 for n in newborns),
        "preterm": sum(int(n["GA"]) < 37 for n in newborns),
    }
    visits: dict[tuple[str, str, str], list[int]] = {}
    for row in _rows(tables, "ANC"):
        visits.setdefault((row["HOSPCODE"], row["PID"], row["GRAVIDA"]), []).append(int(row["GA"]))
    expected["late-first-anc"] = sum(min(v) > 12 for v in visits.values())
    expected["few-anc-visits"] = sum(len(v) < 5 for v in visits.values())
    found = {
        code: len(await seen(centre, f"Observation?code={RISK}|{code}&status=final")) for code in expected
    }
    assert found == expected and found["late-first-anc"] + found["few-anc-visits"] > 0

    before = await versions(centre)
    await import_moph43(centre, tables, 200)
    assert await versions(centre) == before


async def test_generated_fhir_loads_and_derives_the_same_flags(world: World) -> None:  # noqa: F811
    """The FHIR form, written as transactions by an admin client with auth on: the flags fire on it too."""
    population = list(generate(SEED, CHILDREN))
    everything = [r for batch in population[1:] for r in batch]
    admin = await world.caller("admin", "Organization/ops", "admin")
    for batch in population:
        entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                   for r in batch]
        reply = await admin.post("", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert reply.status_code == 200, reply.text[:2000]

    def measured(code: str) -> list[float]:
        """Every birth measurement (the older children's plain birth weights count too)."""
        return [
            r["valueQuantity"]["value"]
            for r in everything
            if r["resourceType"] == "Observation"
            and code in [c.get("code") for c in r["code"].get("coding", [])]
        ]

    expected = {
        "low-birth-weight": sum(g < 2500 for g in measured("8339-4")),
        "preterm": sum(w < 37 for w in measured("76516-4")),
    }
    found = {
        code: len(await seen(admin, f"Observation?code={RISK}|{code}&status=final")) for code in expected
    }
    assert found == expected and sum(found.values()) > 0
    pregnancy_flags = await seen(admin, f"Observation?code={RISK}|late-first-anc,{RISK}|few-anc-visits")
    assert pregnancy_flags and all(f["subject"]["reference"].startswith("Patient/") for f in pregnancy_flags)
