"""The per-process identity book answers "which children does this agency serve as a whole" from a
cache kept up to date change by change; after every kind of change it must answer exactly what a book
read afresh from the store answers, and re-reading the overlap window must not apply a version twice."""

from __future__ import annotations

from typing import Any

from fhir_server.identity.book import IdentityBook, current
from tests.identity.helpers import GOLDEN_TAG, child
from tests.security.conftest import Caller, World

KITTI = "1103700123458"
AGENCIES = ("Organization/cc", "Organization/hosp", "Organization/school1")


def _params(**values: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": k, "valueReference": {"reference": v}} for k, v in values.items()],
    }


async def _golden(admin: Caller, source: str) -> str:
    reply = await admin.get(f"Patient?link=Patient/{source}&_tag={GOLDEN_TAG}")
    return str(reply.json()["entry"][0]["resource"]["id"])


async def _same_as_fresh(world: World, step: str) -> None:
    kept = await current(world.store)
    fresh = IdentityBook()
    await fresh.refresh(world.store)
    for organization in AGENCIES:
        assert kept.served(organization) == fresh.served(organization), (step, organization)
    assert kept.golden_of == fresh.golden_of and kept.owner == fresh.owner, step


async def test_served_children_follow_every_change(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    callers = {
        "cc": await world.caller("cc-app", "Organization/cc", "childcare"),
        "hosp": await world.caller("hosp-app", "Organization/hosp", "hospital"),
        "school": await world.caller("school-app", "Organization/school1", "school"),
    }
    await _same_as_fresh(world, "empty")  # every agency's answer is cached from here on

    ids = {name: (await caller.create(child(KITTI)))["id"] for name, caller in callers.items()}
    await _same_as_fresh(world, "three agencies, one child, automatic links")
    golden = await _golden(admin, ids["cc"])

    nida = (await callers["hosp"].create(child(None, given="นิดา", gender="female")))["id"]
    await _same_as_fresh(world, "a second child at one agency")

    for source in ("cc", "hosp"):
        reply = await admin.post(
            "Patient/$identity-link", _params(source=f"Patient/{ids[source]}", target=f"Patient/{golden}")
        )
        assert reply.status_code == 200, reply.text
        await _same_as_fresh(world, f"a steward confirms {source}")

    reply = await admin.post("Patient/$identity-unlink", _params(source=f"Patient/{ids['school']}"))
    assert reply.status_code == 200, reply.text
    await _same_as_fresh(world, "unlinked")

    other = await _golden(admin, nida)
    reply = await admin.post(
        "Patient/$identity-merge", _params(**{"from": f"Patient/{other}", "into": f"Patient/{golden}"})
    )
    assert reply.status_code == 200, reply.text
    await _same_as_fresh(world, "merged")
    reply = await admin.post("Patient/$identity-unmerge", _params(golden=f"Patient/{other}"))
    assert reply.status_code == 200, reply.text
    await _same_as_fresh(world, "unmerged")

    assert (await callers["cc"].delete(f"Patient/{ids['cc']}")).status_code in (200, 204)
    await _same_as_fresh(world, "one agency's record deleted")


async def test_the_overlap_window_applies_each_version_once(world: World, monkeypatch: Any) -> None:
    hospital = await world.caller("hosp-app", "Organization/hosp", "hospital")
    await hospital.create(child(None, given="แรก"))  # a book of an empty store reads it all once more
    book = await current(world.store)
    applied: list[tuple[str, int]] = []
    original = IdentityBook._apply

    def counting(self: IdentityBook, stored: Any, previous_was_golden: bool) -> None:
        applied.append((stored.id, stored.version))
        original(self, stored, previous_was_golden)

    monkeypatch.setattr(IdentityBook, "_apply", counting)
    for n in range(6):  # each create moves the newest Patient: the next request looks again
        await hospital.create(child(None, given=f"เด็ก{n}", birth=f"2020-01-0{n + 1}"))
        await book.refresh(world.store)
    assert len(applied) == len(set(applied)), applied  # every look re-read the window: none twice
