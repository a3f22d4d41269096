"""A newborn without a CID, imported by two agencies from their 43-file exports, is one child: its
temporary identifier (mother's CID, birth date, birth order) links the records exactly, twins stay two
children, and the automatic link gives neither agency the other's record. Over HTTP, auth on."""

from __future__ import annotations

import shutil
from pathlib import Path

from fhir_server import canonical
from fhir_server.identity import identifiers as ids
from fhir_server.identity import scoring
from fhir_server.identity.features import features
from tests.identity.helpers import GOLDEN_TAG, link_states
from tests.perinatal.support import import_moph43, seen
from tests.perinatal.test_import import SAMPLE
from tests.security import scene
from tests.security.conftest import Caller, World

NEWBORN = canonical.NEWBORN_ID_SYSTEM


async def _agency(world: World, admin: Caller, org: str, kind: str) -> Caller:
    await world.set_agency(f"Organization/{org}", kind)
    reply = await admin.put(f"Organization/{org}", scene.agency(org, kind))
    assert reply.status_code in (200, 201), reply.text
    return await world.caller(f"{org}-app", f"Organization/{org}", kind)


def _newborn_id(patient: dict) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == NEWBORN)


def test_the_temporary_identifier_is_an_exact_identifier() -> None:
    nid, broken = ids.classify({"system": NEWBORN, "value": "1103700123466-20250218-1"})
    assert nid is not None and nid.kind == ids.NEWBORN and broken is None
    for bad in ("1103700123467-20250218-1", "1103700123466-20250231-1", "1103700123466-20250218-0", "x"):
        assert ids.classify({"system": NEWBORN, "value": bad}) == (None, None), bad
    first = {
        "resourceType": "Patient",
        "identifier": [{"system": NEWBORN, "value": "1103700123466-20250218-1"}],
    }
    twin = {
        "resourceType": "Patient",
        "identifier": [{"system": NEWBORN, "value": "1103700123466-20250218-2"}],
    }
    assert scoring.compare(features(first), features(first)).grade == scoring.CERTAIN
    assert scoring.compare(features(first), features(twin)).grade not in (scoring.CERTAIN, scoring.PROBABLE)


async def test_two_agencies_importing_one_newborn_link_to_one_golden_record(
    world: World, tmp_path: Path
) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    centre = await _agency(world, admin, "hc5", "health-centre")
    hospital = await _agency(world, admin, "hosp6", "hospital")
    await import_moph43(centre, SAMPLE, 40)
    theirs = tmp_path / "hospital-export"  # the same births in the hospital's own export (its hospcode)
    shutil.copytree(SAMPLE, theirs)
    for file in theirs.iterdir():
        file.write_text(file.read_text(encoding="utf-8").replace("99905", "99906"), encoding="utf-8")
    await import_moph43(hospital, theirs, 40)

    newborns = [
        p for p in await seen(centre, "Patient") if any(i["system"] == NEWBORN for i in p["identifier"])
    ]
    without_cid = [
        p for p in newborns if not any(i["system"] == canonical.CID_SYSTEM for i in p["identifier"])
    ]
    assert len(newborns) == 3 and len(without_cid) == 2  # the teenager's baby and a twin have no CID yet
    goldens = set()
    for mine in newborns:
        value = _newborn_id(mine)
        (golden,) = await seen(admin, f"Patient?_tag={GOLDEN_TAG}&identifier={NEWBORN}|{value}")
        links = link_states(golden)
        assert len(links) == 2 and mine["id"] in links, links  # one record per agency, one child
        other = next(s for s in links if s != mine["id"])
        rule = "newborn" if mine in without_cid else "cid"
        assert {p["rule"] for p in links.values()} == {"new-record", rule}
        theirs_record = (await admin.get(f"Patient/{other}")).json()
        assert _newborn_id(theirs_record) == value and theirs_record["meta"]["tag"] != mine["meta"]["tag"]
        assert (await centre.get(f"Patient/{other}")).status_code == 404  # an automatic link opens nothing
        goldens.add(golden["id"])
    assert len(goldens) == 3  # the twins (same mother, same day, birth order 1 and 2) stay two children
