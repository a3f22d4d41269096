"""What a write answers is what was stored: the writing-agency tag shows in PATCH and bundle responses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.security.access import OWNER_TAG_SYSTEM
from tests.security import scene
from tests.security.conftest import Caller, World

SCHOOL_TAG = {"system": OWNER_TAG_SYSTEM, "code": "Organization/school1"}


@pytest.fixture
async def s(world: World) -> scene.Scene:
    return await scene.build(world)


async def _stored(caller: Caller, resource: dict[str, Any]) -> dict[str, Any]:
    reply = await caller.get(f"{resource['resourceType']}/{resource['id']}")
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_bundle_entry_writes_answer_with_the_stored_version(s: scene.Scene, kind: str) -> None:
    school = s.school
    bundle = {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "resource": scene.observation("child1", None, "created in a bundle"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:school1:student", "value": kind}],
                    "gender": "male",
                },
                "request": {"method": "PUT", "url": f"Patient?identifier=urn:school1:student|{kind}"},
            },
        ],
    }
    reply = await school.post("", bundle, Prefer="return=representation")
    assert reply.status_code == 200, reply.text
    answered = [e["resource"] for e in reply.json()["entry"]]
    assert len(answered) == 2
    for resource in answered:
        assert SCHOOL_TAG in resource["meta"]["tag"]
        assert resource == await _stored(school, resource)


async def test_patch_answers_with_the_stored_version(s: scene.Scene) -> None:
    school = s.school
    note = await school.create(scene.observation("child1", None, "school note"))
    # A patch that drops meta: the server puts the writing agency back, and the answer shows it.
    patch = [{"op": "remove", "path": "/meta/tag"}, {"op": "replace", "path": "/status", "value": "amended"}]
    reply = await school.http.patch(
        f"Observation/{note['id']}",
        content=orjson.dumps(patch),
        headers=school.headers({"Content-Type": "application/json-patch+json"}),
    )
    assert reply.status_code == 200, reply.text
    answered = reply.json()
    assert answered["status"] == "amended"
    assert answered["meta"]["tag"] == [SCHOOL_TAG]
    assert answered == await _stored(school, answered)
    # The same inside a transaction.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/json-patch+json",
                    "data": _b64(
                        orjson.dumps(
                            [
                                {"op": "remove", "path": "/meta"},
                                {"op": "replace", "path": "/status", "value": "final"},
                            ]
                        )
                    ),
                },
                "request": {"method": "PATCH", "url": f"Observation/{note['id']}"},
            }
        ],
    }
    reply = await school.post("", bundle, Prefer="return=representation")
    assert reply.status_code == 200, reply.text
    entry = reply.json()["entry"][0]["resource"]
    assert entry["meta"]["versionId"] == "3"
    assert SCHOOL_TAG in entry["meta"]["tag"]
    assert entry == await _stored(school, entry)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


async def test_an_update_that_changes_nothing_makes_no_version_but_is_still_authorised(
    s: scene.Scene,
) -> None:
    note = await s.school.create(scene.observation("child1", None, "school note"))
    again = await s.school.http.put(
        f"Observation/{note['id']}", content=orjson.dumps(note), headers=s.school.headers({})
    )
    assert again.status_code == 200, again.text
    assert again.json()["meta"]["versionId"] == "1"  # the same content: no new version
    # Another agency sending the very same content is refused, not answered with the resource.
    foreign = await s.hospital.http.put(
        f"Observation/{note['id']}", content=orjson.dumps(note), headers=s.hospital.headers({})
    )
    assert foreign.status_code == 405, foreign.text  # hidden from the hospital: as for an unknown id
