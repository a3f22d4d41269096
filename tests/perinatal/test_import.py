"""A health centre's 43-file export with two pregnancies (one ending in twins) through the transaction
endpoint, auth on: linked mother, pregnancy, delivery, births and newborns; flags derived; a re-import
writes nothing; a newborn's CID arriving later lands on the same Patient."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fhir_server import canonical
from tests.mapping.golden import MAPPINGS
from tests.perinatal.support import agencies, import_moph43, seen, versions
from tests.security.conftest import Caller, World, world  # noqa: F401  (fixture)

SAMPLE = MAPPINGS / "moph43/samples/export-perinatal"
RISK = canonical.code_system(canonical.CS_PERINATAL_RISK)
PID = canonical.local_record_system("99905", "PID")


async def _patient(caller: Caller, pid: str) -> dict[str, Any]:
    found = await seen(caller, f"Patient?identifier={PID}|{pid}")
    assert len(found) == 1, found
    return found[0]


async def test_two_pregnancies_one_with_twins_import_linked_and_flagged(world: World, tmp_path: Path) -> None:  # noqa: F811
    (centre,) = await agencies(world, "hc5")
    await import_moph43(centre, SAMPLE, 40)

    young, older = await _patient(centre, "3001"), await _patient(centre, "3002")
    episodes = {e["patient"]["reference"]: e for e in await seen(centre, "EpisodeOfCare")}
    assert set(episodes) == {f"Patient/{young['id']}", f"Patient/{older['id']}"}
    twins_episode = episodes[f"Patient/{older['id']}"]
    assert twins_episode["status"] == "finished" and twins_episode["period"] == {"start": "2024-07-01",
                                                                                  "end": "2025-03-10"}
    deliveries = await seen(centre, f"Procedure?episode-of-care=EpisodeOfCare/{twins_episode['id']}")
    assert len(deliveries) == 1
    live = [x for x in deliveries[0]["extension"] if x["url"].endswith("/th-live-births")]
    assert live[0]["valueUnsignedInt"] == 2

    # The twins' births point at their mother's pregnancy; each twin's MTH RelatedPerson is her.
    births = await seen(centre, f"Encounter?episode-of-care=EpisodeOfCare/{twins_episode['id']}&type="
                                f"{canonical.code_system(canonical.CS_PERINATAL_EVENT)}|birth")
    twins = {b["subject"]["reference"] for b in births}
    assert twins == {f"Patient/{(await _patient(centre, p))['id']}" for p in ("3102", "3103")}
    mothers = await seen(centre, f"RelatedPerson?person-record=Patient/{older['id']}")
    assert {m["patient"]["reference"] for m in mothers} == twins
    assert all(m["relationship"][0]["coding"][0]["code"] == "MTH" for m in mothers)
    assert len(await seen(centre, f"Encounter?subject=Patient/{older['id']}&type="
                                  f"{canonical.code_system(canonical.CS_PERINATAL_EVENT)}|antenatal")) == 5

    # Flags: the lighter twin and the teenager's baby weigh under 2,500 g; the twins were preterm; the
    # teenager came late (14 weeks) and twice only.
    low = {o["subject"]["reference"] for o in await seen(centre, f"Observation?code={RISK}|low-birth-weight")
           if o["status"] == "final"}
    first = await _patient(centre, "3101")
    lighter = await _patient(centre, "3103")
    assert low == {f"Patient/{first['id']}", f"Patient/{lighter['id']}"}
    preterm = await seen(centre, f"Observation?code={RISK}|preterm")
    assert {o["subject"]["reference"] for o in preterm} == twins
    teen_flags = await seen(centre, f"Observation?subject=Patient/{young['id']}&code={RISK}|teenage-mother,"
                                    f"{RISK}|late-first-anc,{RISK}|few-anc-visits")
    assert {o["code"]["coding"][0]["code"] for o in teen_flags} == {"teenage-mother", "late-first-anc",
                                                                     "few-anc-visits"}
    assert await seen(centre, f"Observation?subject=Patient/{older['id']}&code={RISK}|teenage-mother") == []

    # The low-birth-weight baby's $everything carries its birth, its weight and the flag.
    everything = await centre.get(f"Patient/{first['id']}/$everything")
    assert everything.status_code == 200, everything.text
    shown = {(e["resource"]["resourceType"], e["resource"].get("code", {}).get("coding", [{}])[0].get("code"))
            for e in everything.json()["entry"]}
    assert ("Observation", "8339-4") in shown and ("Observation", "low-birth-weight") in shown
    assert any(kind == "Encounter" for kind, _ in shown)

    # The mother's $everything holds her pregnancy, her antenatal visits and her delivery.
    hers = await centre.get(f"Patient/{older['id']}/$everything")
    assert hers.status_code == 200, hers.text
    kinds = {e["resource"]["resourceType"] for e in hers.json()["entry"]}
    assert {"EpisodeOfCare", "Encounter", "Procedure"} <= kinds

    # A second import of the same export writes no new version of anything.
    before = await versions(centre)
    await import_moph43(centre, SAMPLE, 40)
    assert await versions(centre) == before

    # The export of a later month gives the teenager's baby its CID: the same Patient, now with it.
    later = tmp_path / "later"
    shutil.copytree(SAMPLE, later)
    person = later / "PERSON.txt"
    text = person.read_text(encoding="utf-8")
    person.write_text(text.replace("99905||3101|", "99905|1103700555048|3101|"), encoding="utf-8")
    await import_moph43(centre, later, 40)
    found = await seen(centre, f"Patient?identifier={canonical.CID_SYSTEM}|1103700555048")
    assert [p["id"] for p in found] == [first["id"]]
    assert len(await seen(centre, "Patient")) == 5
    assert {i["system"] for i in found[0]["identifier"]} >= {canonical.CID_SYSTEM, PID,
                                                             canonical.NEWBORN_ID_SYSTEM}


def test_bad_perinatal_rows_are_rejected_with_file_row_field_and_reason(tmp_path: Path) -> None:
    from fhir_server.cli.importer import run_import

    report = tmp_path / "errors.csv"
    result = run_import("moph43", [MAPPINGS / "moph43/samples/export-perinatal-errors"], dry_run=True,
                        errors_path=report)
    found = {(e.table, e.row, e.field, e.severity): e.reason for e in result["errors"]}
    assert found[("NEWBORN", 2, "HOSPCODE/MPID", "error")] == (
        "no accepted PERSON record of the mother for HOSPCODE/MPID 99906/4999")
    assert found[("NEWBORN", 3, "BDATE", "error")] == (
        "birth date 2024-05-15 is before the mother's last menstrual period 2024-06-01")
    assert found[("LABOR", 2, "BDATE", "error")].startswith("birth date 2024-05-01 is before")
    assert found[("NEWBORN", 4, "GA", "error")] == "gestational age 46 weeks is over 45 weeks"
    assert found[("ANC", 2, "GA", "error")] == "gestational age 46 weeks is over 45 weeks"
    assert found[("NEWBORN", 5, "BWEIGHT", "error")] == "birth weight 0 g is not a weight"
    assert found[("NEWBORN", 6, "BWEIGHT", "error")] == "birth weight 7500 g is over 7 kg"
    assert found[("NEWBORNCARE", 2, "HOSPCODE/PID", "error")].startswith("no accepted NEWBORN record")
    # Implausible but possible: written, and reported as a warning.
    assert found[("NEWBORN", 7, "BWEIGHT", "warning")].startswith("birth weight 450 g is unusually low")
    assert result["rejected"] == 9
    assert result["records"] == 7 + 1 + 1  # persons, the pregnancy, the 450 g newborn
    lines = report.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "file,table,row,field,reason,severity"
    assert sum(line.endswith(",warning") for line in lines) == 1
