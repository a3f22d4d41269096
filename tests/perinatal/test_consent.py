"""A child's consent covers the child's own birth record, never the mother's pregnancy: her episode,
visits, screening, delivery and flags are in her compartment and only a consent for her shares them."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from tests.perinatal import records
from tests.perinatal.support import agencies
from tests.security import scene
from tests.security.conftest import Caller, World, world  # noqa: F401  (fixture)

RISK = canonical.code_system(canonical.CS_PERINATAL_RISK)


async def _ids(caller: Caller, query: str) -> set[str]:
    reply = await caller.get(query)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry", [])}


async def _setup(world: World) -> tuple[Caller, Caller, dict[str, str]]:  # noqa: F811
    hospital, centre = await agencies(world, "hosp", "hc1")
    bundle = records.pregnancy_bundle(grams=2380)
    reply = await hospital.post("", bundle)
    assert reply.status_code == 200, reply.text
    ids = records.ids_by_url(reply.json(), bundle)
    guardian = await hospital.create(
        {
            "resourceType": "RelatedPerson",
            "patient": {"reference": ids[records.CHILD]},
            "relationship": [{"coding": [{"system": canonical.V3_ROLE_CODE_SYSTEM, "code": "MTH"}]}],
            "name": [{"family": "ศรีสุข", "given": ["สมศรี"]}],
        }
    )
    ids["guardian"] = f"RelatedPerson/{guardian['id']}"
    return hospital, centre, ids


def _consent(patient: str, guardian: str | None) -> dict[str, Any]:
    body = scene.consent(
        patient.split("/")[1],
        actors=("Organization/hc1",),
        classes=("demographics", "perinatal", "referral"),
        purposes=("TREAT",),
        guardian=guardian.split("/")[1] if guardian else None,
    )
    return body


async def test_childs_consent_shares_the_birth_record_not_the_mothers_pregnancy(world: World) -> None:  # noqa: F811
    hospital, centre, ids = await _setup(world)
    child, mother, episode = ids[records.CHILD], ids[records.MOTHER], ids[records.EPISODE]
    assert await _ids(centre, f"Encounter?subject={child}") == set()  # nothing before a consent

    await hospital.create(_consent(child, ids["guardian"]))
    seen = await _ids(centre, f"Patient/{child.split('/')[1]}/$everything")
    assert {ids[records.BIRTH], ids[records.WEIGHT], child} <= seen
    assert any(ref.startswith("Observation/") and ref != ids[records.WEIGHT] for ref in seen)  # its flag
    assert any(ref.startswith("ServiceRequest/") for ref in seen)  # the follow-up proposal
    # The birth points at the mother's pregnancy, but the pregnancy is hers: not included, not readable.
    assert episode not in seen and mother not in seen
    assert (await centre.get(episode)).status_code == 404
    assert await _ids(centre, f"EpisodeOfCare?patient={mother}") == set()
    assert await _ids(centre, f"Encounter?episode-of-care={episode}") == {ids[records.BIRTH]}
    assert await _ids(centre, f"Observation?code={RISK}|teenage-mother") == set()

    # A consent for the mother herself (she is an adult: no guardian) shares her pregnancy.
    await hospital.create(_consent(mother, None))
    assert await _ids(centre, f"EpisodeOfCare?patient={mother}") == {episode}
    visits = await _ids(centre, f"Encounter?episode-of-care={episode}")
    assert ids[records.BIRTH] in visits and len(visits) == 2
    assert len(await _ids(centre, f"Observation?code={RISK}|teenage-mother")) == 1
