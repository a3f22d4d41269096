"""The child's $summary has a birth section (birth, weight, gestational age, the child's own flags),
shown under a consent for the perinatal class and withheld without one; never the mother's pregnancy."""

from __future__ import annotations

from fhir_server import canonical
from tests.perinatal import records
from tests.perinatal.support import agencies
from tests.security import scene
from tests.security.conftest import World, world  # noqa: F401  (fixture)
from tests.summary.support import sections


async def test_birth_section_follows_the_perinatal_consent(world: World) -> None:  # noqa: F811
    hospital, centre = await agencies(world, "hosp", "hc1")
    bundle = records.pregnancy_bundle(grams=2380)
    reply = await hospital.post("", bundle)
    assert reply.status_code == 200, reply.text
    ids = records.ids_by_url(reply.json(), bundle)
    child = ids[records.CHILD].split("/")[1]

    # A consent without the perinatal class: the section is withheld; with it: shown.
    guardian = await hospital.create(
        {
            "resourceType": "RelatedPerson",
            "patient": {"reference": f"Patient/{child}"},
            "relationship": [{"coding": [{"system": canonical.V3_ROLE_CODE_SYSTEM, "code": "MTH"}]}],
            "name": [{"family": "ศรีสุข", "given": ["สมศรี"]}],
        }
    )
    for classes, expected in ((("demographics",), "withheld"), (("demographics", "perinatal"), None)):
        await hospital.create(scene.consent(child, actors=("Organization/hc1",), classes=classes,
                                            purposes=("TREAT",), guardian=guardian["id"]))
        reply = await centre.get(f"Patient/{child}/$summary")
        assert reply.status_code == 200, reply.text
        birth = sections(reply.json())["birth"]
        assert birth.get("emptyReason", {}).get("coding", [{}])[0].get("code") == expected

    refs = {"/".join(e["reference"].split("/")[-2:]) for e in birth["entry"]}
    assert {ids[records.BIRTH], ids[records.WEIGHT]} <= refs
    assert "2380 g" in birth["text"]["div"] and "น้ำหนักแรกเกิดน้อย" in birth["text"]["div"]
    in_bundle = {f"{e['resource']['resourceType']}/{e['resource'].get('id')}" for e in reply.json()["entry"]}
    assert ids[records.BIRTH] in in_bundle and ids[records.EPISODE] not in in_bundle
