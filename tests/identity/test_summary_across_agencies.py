"""``$summary`` follows the identity links (auth on): one child's growth from two agencies, for a school
under the consent of an agency a data steward confirmed; nothing for an agency without one."""

from __future__ import annotations

from tests.identity.helpers import GOLDEN_TAG, child
from tests.security.conftest import World
from tests.security.scene import GROWTH, consent, observation
from tests.summary.support import entry_ids, sections

KITTI = "1103700123458"


async def test_summary_of_any_record_covers_every_agency_as_consent_allows(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    hospital = await world.caller("hosp-app", "Organization/hosp", "hospital")
    school = await world.caller("school-app", "Organization/school1", "school")
    other = await world.caller("school-b", "Organization/school2", "school")
    born = {"birth": "2010-03-15"}
    cc = (await childcare.create(child(KITTI, **born)))["id"]
    hosp = (await hospital.create(child(KITTI, **born)))["id"]
    cc_weight = "Observation/" + (await childcare.create(observation(cc, GROWTH, "w")))["id"]
    hosp_weight = "Observation/" + (await hospital.create(observation(hosp, GROWTH, "w")))["id"]
    golden = (await admin.get(f"Patient?link=Patient/{cc}&_tag={GOLDEN_TAG}")).json()["entry"][0]["resource"]
    # A data steward confirms the childcare centre's link: it now speaks for the whole child.
    confirm = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source", "valueReference": {"reference": f"Patient/{cc}"}},
            {"name": "target", "valueReference": {"reference": f"Patient/{golden['id']}"}},
        ],
    }
    assert (await admin.post("Patient/$identity-link", confirm)).status_code == 200
    grant = consent(cc, actors=("Organization/school1",), classes=("demographics", "growth"))
    assert (await childcare.post("Consent", grant)).status_code == 201

    for start in (golden["id"], hosp, cc):
        reply = await school.get(f"Patient/{start}/$summary")
        assert reply.status_code == 200, reply.text
        growth = sections(reply.json())["growth"]
        assert entry_ids(reply.json(), growth) == {cc_weight, hosp_weight}, start
    # The hospital's link is automatic: it may not see the childcare centre's growth data, and a
    # summary never shows part of a section, so growth is withheld.
    own = (await hospital.get(f"Patient/{hosp}/$summary")).json()
    assert sections(own)["growth"]["emptyReason"]["coding"][0]["code"] == "withheld"
    # A school without consent: the child answers as one that does not exist.
    hidden = await other.get(f"Patient/{golden['id']}/$summary")
    missing = await other.get("Patient/no-such-child/$summary")
    assert hidden.status_code == missing.status_code == 404
