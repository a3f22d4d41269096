"""Risk flags and the follow-up proposal are written with the records they rest on (auth on), change
when the records change, and are searchable like any Observation."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from fhir_server.perinatal import derive
from tests.perinatal import records
from tests.security.conftest import Caller, World, world  # noqa: F401  (fixture)

RISK = canonical.code_system(canonical.CS_PERINATAL_RISK)


async def _hospital(world: World) -> Caller:  # noqa: F811
    return await world.caller("hospital-app", "Organization/hospital1", "hospital")


async def _search(caller: Caller, query: str) -> list[dict[str, Any]]:
    reply = await caller.get(query)
    assert reply.status_code == 200, reply.text
    entries = reply.json().get("entry", [])
    return [e["resource"] for e in entries if e.get("search", {}).get("mode") == "match"]


async def _flags(caller: Caller, code: str) -> list[dict[str, Any]]:
    return await _search(caller, f"Observation?code={RISK}|{code}")


async def test_flags_and_proposal_follow_the_records(world: World) -> None:  # noqa: F811
    hospital = await _hospital(world)
    bundle = records.pregnancy_bundle(grams=2380, visits=(("2024-08-26", 14),))
    reply = await hospital.post("", bundle)
    assert reply.status_code == 200, reply.text
    ids = records.ids_by_url(reply.json(), bundle)
    child, mother, weight = ids[records.CHILD], ids[records.MOTHER], ids[records.WEIGHT]
    episode = ids[records.EPISODE]

    (lbw,) = await _flags(hospital, "low-birth-weight")
    assert lbw["subject"]["reference"] == child and lbw["valueBoolean"] is True
    assert lbw["derivedFrom"] == [{"reference": weight}]
    assert lbw["meta"]["profile"] == [canonical.structure_definition(canonical.PROFILE_PERINATAL_RISK)]
    assert lbw["id"] == derive.flag_id(weight, "low-birth-weight")
    for code in ("teenage-mother", "late-first-anc", "few-anc-visits"):
        (flag,) = await _flags(hospital, code)
        assert flag["subject"]["reference"] == mother
        assert flag["extension"][0]["valueReference"]["reference"] == episode
    (proposal,) = await _search(hospital, f"ServiceRequest?subject={child}&intent=proposal")
    assert (proposal["status"], proposal["code"]["coding"][0]["code"]) == ("draft", "DAIM")
    assert proposal["reasonReference"] == [{"reference": f"Observation/{lbw['id']}"}]
    # Measures can ask for low birth weights directly.
    low = await _search(hospital, "Observation?birth-weight=lt2500")
    assert [o["id"] for o in low] == [weight.split("/")[1]]
    assert len(await _search(hospital, "Encounter?gestational-age=gt12")) == 1

    # A corrected weight withdraws the flag and the still-draft proposal.
    corrected = records.birth_weight(2600, child_ref=child, birth_ref=ids[records.BIRTH])
    reply = await hospital.put(weight, {**corrected, "id": weight.split("/")[1]})
    assert reply.status_code == 200, reply.text
    (lbw,) = await _flags(hospital, "low-birth-weight")
    assert lbw["status"] == "entered-in-error"
    (proposal,) = await _search(hospital, f"ServiceRequest?subject={child}&intent=proposal")
    assert proposal["status"] == "revoked"
    assert await _search(hospital, "Observation?birth-weight=lt2500") == []

    # Four more visits make five: the pregnancy no longer has too few (the late first visit stays).
    for on, weeks in (("2024-09-23", 18), ("2024-10-21", 22), ("2024-11-18", 26), ("2024-12-16", 30)):
        await hospital.create(records.antenatal(on, weeks, episode_ref=episode, mother_ref=mother))
    (few,) = await _flags(hospital, "few-anc-visits")
    assert few["status"] == "entered-in-error"
    (late,) = await _flags(hospital, "late-first-anc")
    assert late["status"] == "final"


async def test_a_proposal_taken_up_by_the_workflow_is_left_alone(world: World) -> None:  # noqa: F811
    hospital = await _hospital(world)
    bundle = records.pregnancy_bundle(grams=1900)
    reply = await hospital.post("", bundle)
    ids = records.ids_by_url(reply.json(), bundle)
    child, weight = ids[records.CHILD], ids[records.WEIGHT]
    (proposal,) = await _search(hospital, f"ServiceRequest?subject={child}&intent=proposal")
    # Admins may take it up here (an agency's PUT to an id is refused with auth on).
    admin = await world.caller("admin-app", "Organization/hospital1", "admin")
    taken = {**proposal, "status": "active", "intent": "order"}
    assert (await admin.put(f"ServiceRequest/{proposal['id']}", taken)).status_code == 200
    corrected = records.birth_weight(3000, child_ref=child, birth_ref=ids[records.BIRTH])
    assert (await hospital.put(weight, {**corrected, "id": weight.split("/")[1]})).status_code == 200
    (after,) = await _search(admin, f"ServiceRequest?subject={child}")
    assert (after["status"], after["intent"]) == ("active", "order")


async def test_deleting_the_pregnancy_withdraws_its_flags(world: World) -> None:  # noqa: F811
    hospital = await _hospital(world)
    bundle = records.pregnancy_bundle()
    ids = records.ids_by_url((await hospital.post("", bundle)).json(), bundle)
    assert len([f for f in await _flags(hospital, "teenage-mother") if f["status"] == "final"]) == 1
    for url in [u for u, ref in ids.items() if ref.startswith(("Encounter/", "Procedure/"))]:
        assert (await hospital.delete(ids[url])).status_code in (200, 204)
    assert (await hospital.delete(ids[records.EPISODE])).status_code in (200, 204)
    for code in ("teenage-mother", "late-first-anc", "few-anc-visits"):
        assert [f["status"] for f in await _flags(hospital, code)] == ["entered-in-error"]
