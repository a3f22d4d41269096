"""Who sees what once records are linked (auth on): golden identity, consent per child, :mdm, audit."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity.helpers import GOLDEN_TAG, child
from tests.security.conftest import World
from tests.security.scene import GROWTH, consent, observation

KITTI = "1103700123458"


@pytest.fixture
async def scene(world: World) -> dict[str, Any]:
    callers = {
        "admin": await world.caller("admin", "Organization/ops", "admin"),
        "childcare": await world.caller("cc-app", "Organization/cc", "childcare"),
        "hospital": await world.caller("hosp-app", "Organization/hosp", "hospital"),
        "school": await world.caller("school-app", "Organization/school1", "school"),
        "other": await world.caller("school-b", "Organization/school2", "school"),
    }
    born_2010 = {"birth": "2010-03-15"}  # old enough to consent for itself (no guardian needed)
    ids = {
        "cc": (await callers["childcare"].create(child(KITTI, **born_2010)))["id"],
        "hosp": (await callers["hospital"].create(child(KITTI, **born_2010)))["id"],
        "school": (await callers["school"].create(child(KITTI, **born_2010)))["id"],
    }
    reply = await callers["admin"].get(f"Patient?link=Patient/{ids['cc']}&_tag={GOLDEN_TAG}")
    ids["golden"] = reply.json()["entry"][0]["resource"]["id"]
    ids["cc-growth"] = (await callers["childcare"].create(observation(ids["cc"], GROWTH, "w")))["id"]
    ids["hosp-growth"] = (await callers["hospital"].create(observation(ids["hosp"], GROWTH, "w")))["id"]
    ids["hosp-diagnosis"] = (await callers["hospital"].create(observation(ids["hosp"], None, "dx")))["id"]
    return {**callers, "ids": ids}


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match"
    }


def _params(**values: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": k, "valueReference": {"reference": v}} for k, v in values.items()],
    }


async def _confirm(scene: dict[str, Any], source: str) -> None:
    """A data steward confirms the link of ``source`` to the child's golden record (a manual link)."""
    ids = scene["ids"]
    reply = await scene["admin"].post(
        "Patient/$identity-link", _params(source=f"Patient/{ids[source]}", target=f"Patient/{ids['golden']}")
    )
    assert reply.status_code == 200, reply.text


async def test_golden_record_is_read_by_agencies_serving_the_whole_child_only(
    scene: dict[str, Any], world: World
) -> None:
    ids = scene["ids"]
    # Three agencies' writes carried the CID: automatic links, none of which carries authority, so no
    # agency reads the merged identity, which answers exactly as a Patient that does not exist.
    unknown = await scene["other"].get("Patient/no-such-child")
    for name in ("childcare", "hospital", "school", "other"):
        hidden = await scene[name].get(f"Patient/{ids['golden']}")
        assert hidden.status_code == unknown.status_code == 404, name
        assert hidden.json()["issue"][0]["diagnostics"] == f"Patient/{ids['golden']} is not known"
    # A data steward confirms the hospital's link: now it serves the whole child.
    await _confirm(scene, "hosp")
    assert (await scene["hospital"].get(f"Patient/{ids['golden']}")).status_code == 200
    for name in ("childcare", "school"):
        assert (await scene[name].get(f"Patient/{ids['golden']}")).status_code == 404, name
    # Serving a child opens its identity, not the other agencies' records or their data.
    assert (await scene["hospital"].get(f"Patient/{ids['cc']}")).status_code == 404
    assert (await scene["hospital"].get(f"Observation/{ids['cc-growth']}")).status_code == 404
    # The look-up is audited with the golden record as the entity.
    events = [
        e
        for e in await world.audit_events()
        if e["agent"][0]["who"].get("identifier", {}).get("value") == "hosp-app"
    ]
    assert any(
        f"Patient/{ids['golden']}" in {x["what"]["reference"] for x in e.get("entity", []) if "what" in x}
        for e in events
    )


async def test_everything_and_mdm_follow_the_links(scene: dict[str, Any]) -> None:
    ids, school = scene["ids"], scene["school"]
    # Without consent each agency's $everything over the links is what it wrote.
    own = _ids((await school.get(f"Patient/{ids['school']}/$everything")).json())
    assert own == {f"Patient/{ids['school']}"}
    first = _ids((await scene["childcare"].get(f"Patient/{ids['cc']}/$everything")).json())
    assert first == {f"Patient/{ids['cc']}", f"Observation/{ids['cc-growth']}"}
    # Confirmed by a steward, the childcare centre records the child's consent for growth.
    await _confirm(scene, "cc")
    agreement = consent(ids["cc"], actors=("Organization/school1",), classes=("growth",), purposes=("COC",))
    assert (await scene["childcare"].post("Consent", agreement)).status_code == 201, "consent"
    seen = _ids((await school.get(f"Patient/{ids['school']}/$everything")).json())
    assert seen == own | {f"Observation/{ids['cc-growth']}", f"Observation/{ids['hosp-growth']}"}
    # The :mdm modifier finds what every linked record holds, from any of the child's ids.
    for start in (ids["school"], ids["golden"], ids["hosp"]):
        found = (await school.get(f"Observation?subject:mdm=Patient/{start}")).json()
        assert _ids(found) == {f"Observation/{ids['cc-growth']}", f"Observation/{ids['hosp-growth']}"}, start
    plain = (await school.get(f"Observation?subject=Patient/{ids['school']}")).json()
    assert _ids(plain) == set()  # without :mdm, only what names the school's own record
    everyone = (await scene["childcare"].get(f"Patient?_id:mdm={ids['cc']}")).json()
    assert _ids(everyone) == {f"Patient/{ids['cc']}", f"Patient/{ids['golden']}"}
    hospital = (await scene["hospital"].get(f"Patient?_id:mdm={ids['hosp']}")).json()
    assert _ids(hospital) == {f"Patient/{ids['hosp']}"}
    bad = await school.get(f"Observation?code:mdm=Patient/{ids['school']}")
    assert bad.status_code == 400 and ":mdm" in bad.text
    # References to a source record keep working.
    assert (await scene["hospital"].get(f"Observation?subject=Patient/{ids['hosp']}")).json()["entry"]


async def test_consent_decides_for_the_records_its_recorder_speaks_for(scene: dict[str, Any]) -> None:
    ids, school = scene["ids"], scene["school"]
    # Before any steward confirmed it, the childcare centre's consent covers its own record only.
    permit = consent(ids["cc"], actors=("Organization/school1",), classes=("growth",))
    assert (await scene["childcare"].post("Consent", permit)).status_code == 201
    assert (await school.get(f"Observation/{ids['cc-growth']}")).status_code == 200
    assert (await school.get(f"Observation/{ids['hosp-growth']}")).status_code == 404
    # Confirmed, the same consent covers every agency's record of the child.
    await _confirm(scene, "cc")
    assert (await school.get(f"Observation/{ids['hosp-growth']}")).status_code == 200
    # A deny recorded by the hospital (not confirmed) on its own record wins for its own record only.
    deny = consent(ids["hosp"], actors=("Organization/school1",), classes=("growth",), kind="deny")
    assert (await scene["hospital"].post("Consent", deny)).status_code == 201
    assert (await school.get(f"Observation/{ids['hosp-growth']}")).status_code == 404
    assert (await school.get(f"Observation/{ids['cc-growth']}")).status_code == 200
    # The confirmed childcare centre's deny wins for every record.
    deny = consent(ids["cc"], actors=("Organization/school1",), classes=("growth",), kind="deny")
    assert (await scene["childcare"].post("Consent", deny)).status_code == 201
    for obs in ("cc-growth", "hosp-growth"):
        assert (await school.get(f"Observation/{ids[obs]}")).status_code == 404, obs


async def test_serving_follows_confirmed_links_for_consent_authority(scene: dict[str, Any]) -> None:
    ids = scene["ids"]
    # Naming the golden record takes speaking for the whole child: without it the golden record is
    # hidden and the Consent is refused as one naming a child that does not exist.
    about_golden = consent(ids["golden"], actors=("Organization/school2",), classes=("demographics",))
    for name in ("school", "childcare"):
        refused = await scene[name].post("Consent", about_golden)
        assert refused.status_code == 422 and "which is not known" in refused.text, (name, refused.text)
    await _confirm(scene, "cc")
    assert (await scene["childcare"].post("Consent", about_golden)).status_code == 201
    about_hospital = consent(ids["hosp"], actors=("Organization/school2",), classes=("demographics",))
    refused = await scene["other"].post("Consent", about_hospital)
    assert refused.status_code in (403, 422), refused.text
    # school2 now sees the child's records (demographics) through the consent on the golden record.
    assert (await scene["other"].get(f"Patient/{ids['hosp']}")).status_code == 200
    assert (await scene["other"].get(f"Patient/{ids['golden']}")).status_code == 200
    assert (await scene["other"].get(f"Observation/{ids['hosp-growth']}")).status_code == 404


async def test_seeing_the_child_is_not_speaking_for_it(scene: dict[str, Any]) -> None:
    ids = scene["ids"]
    # The confirmed childcare centre shares the child's demographics with the hospital: the hospital
    # now sees the golden record and the childcare centre's record, yet its own link is automatic, so
    # it may not record consent for them.
    await _confirm(scene, "cc")
    shared = consent(
        ids["golden"], actors=("Organization/hosp",), classes=("demographics",), purposes=("TREAT",)
    )
    assert (await scene["childcare"].post("Consent", shared)).status_code == 201
    assert (await scene["hospital"].get(f"Patient/{ids['cc']}")).status_code == 200
    assert (await scene["hospital"].get(f"Patient/{ids['golden']}")).status_code == 200
    for named in ("cc", "golden"):
        grant = consent(ids[named], actors=("Organization/school2",), classes=("growth",))
        refused = await scene["hospital"].post("Consent", grant)
        assert refused.status_code == 403, refused.text
        assert "serves" in refused.json()["issue"][0]["diagnostics"]
    # On its own record it may: that consent decides for its own record, never the childcare centre's.
    grant = consent(ids["hosp"], actors=("Organization/school2",), classes=("growth",))
    assert (await scene["hospital"].post("Consent", grant)).status_code == 201
    assert (await scene["other"].get(f"Observation/{ids['hosp-growth']}")).status_code == 200
    assert (await scene["other"].get(f"Observation/{ids['cc-growth']}")).status_code == 404
