"""An agency that knows a child's CID must not link itself into the child (auth on).

Automatic linking on a shared national identifier is the server's bookkeeping; it must not become a
way in. These tests play an agency that never served the child and sends the child's CID.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
import pytest

from tests.identity.helpers import CID, GOLDEN_TAG, child
from tests.security.conftest import World
from tests.security.scene import GROWTH, consent, observation

KITTI = "1103700123458"
NOBODY = "1103700123466"  # a valid CID no record has


@pytest.fixture
async def victim(world: World) -> dict[str, Any]:
    callers = {
        "admin": await world.caller("admin", "Organization/ops", "admin"),
        "childcare": await world.caller("cc-app", "Organization/cc", "childcare"),
        "attacker": await world.caller("rogue-app", "Organization/rogue", "school"),
    }
    born = {"birth": "2010-03-15", "address": [{"text": "12 ซอยลับ กรุงเทพฯ"}]}
    ids = {"cc": (await callers["childcare"].create(child(KITTI, **born)))["id"]}
    ids["cc-growth"] = (await callers["childcare"].create(observation(ids["cc"], GROWTH, "w")))["id"]
    reply = await callers["admin"].get(f"Patient?link=Patient/{ids['cc']}&_tag={GOLDEN_TAG}")
    ids["golden"] = reply.json()["entry"][0]["resource"]["id"]
    return {**callers, "ids": ids}


def _match(cid: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": child(cid)}]}


def _comparable(bundle: dict[str, Any], *, links: bool = False) -> dict[str, Any]:
    return {k: v for k, v in bundle.items() if k not in ("id", "meta") and (links or k != "link")}


async def test_match_answers_for_a_hidden_child_as_for_a_missing_one(victim: dict[str, Any]) -> None:
    attacker = victim["attacker"]
    hidden = await attacker.post("Patient/$match", _match(KITTI))
    missing = await attacker.post("Patient/$match", _match(NOBODY))
    assert hidden.status_code == missing.status_code == 200
    assert (
        _comparable(hidden.json())
        == _comparable(missing.json())
        == {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 0,
        }
    )
    # The child is there: the agency serving it finds it.
    found = (await victim["childcare"].post("Patient/$match", _match(KITTI))).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [victim["ids"]["golden"]]


async def test_sending_a_known_cid_links_the_record_but_opens_nothing(victim: dict[str, Any]) -> None:
    ids, attacker = victim["ids"], victim["attacker"]
    mine = (await attacker.create(child(KITTI, given="ปลอม")))["id"]
    golden = (await victim["admin"].get(f"Patient/{ids['golden']}")).json()
    assert {lk["other"]["reference"] for lk in golden["link"]} == {f"Patient/{ids['cc']}", f"Patient/{mine}"}
    # The merged identity, the childcare centre's record and its data stay exactly as unknown ones.
    unknown = await attacker.get("Patient/no-such-child")
    hidden = await attacker.get(f"Patient/{ids['golden']}")
    assert hidden.status_code == unknown.status_code == 404
    assert (await attacker.get(f"Patient/{ids['cc']}")).status_code == 404
    assert (await attacker.get(f"Observation/{ids['cc-growth']}")).status_code == 404
    everything = (await attacker.get(f"Patient/{mine}/$everything")).json()
    assert {e["resource"]["id"] for e in everything.get("entry", [])} == {mine}
    linked = (await attacker.get(f"Patient?_id:mdm={mine}")).json()
    assert {e["resource"]["id"] for e in linked.get("entry", [])} == {mine}
    # It may not record consent for the child as a whole or for the childcare centre's record ...
    for named in (ids["golden"], ids["cc"]):
        refused = await attacker.post("Consent", consent(named, actors=("Organization/rogue",)))
        assert refused.status_code == 422, refused.text  # as for a child that does not exist
        assert f"Patient/{named}, which is not known" in refused.json()["issue"][0]["diagnostics"]
    # ... and a consent on its own record, granting itself everything, decides for its record only.
    grant = consent(mine, actors=("Organization/rogue",), classes=("demographics", "growth", "development"))
    assert (await attacker.post("Consent", grant)).status_code == 201
    assert (await attacker.get(f"Patient/{ids['golden']}")).status_code == 404
    assert (await attacker.get(f"Patient/{ids['cc']}")).status_code == 404
    assert (await attacker.get(f"Observation/{ids['cc-growth']}")).status_code == 404
    found = (await attacker.get(f"Observation?subject:mdm=Patient/{mine}")).json()
    assert "entry" not in found


async def test_a_record_moved_onto_a_known_cid_gains_nothing(victim: dict[str, Any]) -> None:
    """First a record of its own (it founds a child), then the victim's CID: the move is its own link."""
    ids, attacker = victim["ids"], victim["attacker"]
    mine = await attacker.create(child(None, given="ปลอม"))
    before = (await attacker.get(f"Patient?_id:mdm={mine['id']}")).json()
    assert len(before["entry"]) == 2  # its own record and the golden record it founded
    mine["identifier"] = [{"system": CID, "value": KITTI}]
    assert (await attacker.put(f"Patient/{mine['id']}", mine)).status_code == 200
    golden = (await victim["admin"].get(f"Patient/{ids['golden']}")).json()
    assert f"Patient/{mine['id']}" in {lk["other"]["reference"] for lk in golden["link"]}
    assert (await attacker.get(f"Patient/{ids['golden']}")).status_code == 404
    refused = await attacker.post("Consent", consent(ids["golden"], actors=("Organization/rogue",)))
    assert refused.status_code == 422 and "which is not known" in refused.text, refused.text


async def test_mdm_answers_for_a_hidden_child_as_for_a_missing_one(victim: dict[str, Any]) -> None:
    ids, attacker = victim["ids"], victim["attacker"]
    hidden = await attacker.get(f"Observation?subject:mdm=Patient/{ids['cc']}")
    missing = await attacker.get("Observation?subject:mdm=Patient/no-such-child")
    assert hidden.status_code == missing.status_code == 200
    assert ids["golden"] not in hidden.text  # the links show the parameter as sent, not the linked ids

    def shape(reply: Any, named: str) -> str:
        return orjson.dumps(_comparable(reply.json(), links=True)).decode().replace(named, "X")

    assert shape(hidden, ids["cc"]) == shape(missing, "no-such-child")
    # The agency serving the child gets its records, and the same self link.
    served = await victim["childcare"].get(f"Observation?subject:mdm=Patient/{ids['golden']}")
    assert {e["resource"]["id"] for e in served.json()["entry"]} == {ids["cc-growth"]}
    self_link = unquote(served.json()["link"][0]["url"])
    assert f"subject:mdm=Patient/{ids['golden']}" in self_link and ids["cc"] not in self_link
