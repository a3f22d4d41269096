"""Blocking: the Thai matching cases meet in a block; look-alike children keep a create's work bounded;
review items live beside the golden record, not in it; clients cannot write blocking keys."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.identity import blocking, candidates, review
from fhir_server.identity.features import features
from fhir_server.identity.model import BLOCK_SYSTEM
from tests.identity.test_matching_thai_cases import MALI, _lang, patient, thai_name
from tests.security.conftest import World


def _meet(query: dict[str, Any], golden: dict[str, Any]) -> bool:
    """Whether ``query`` looks up a key that a golden record with ``golden``'s identity carries."""
    return bool(set(blocking.query_keys(features(query))) & set(blocking.golden_keys(features(golden))))


def test_the_thai_matching_cases_share_a_block() -> None:
    spelled = (
        patient(thai_name("ด.ญ.พิมพ์ชนก ศรีสุข", "พิมพ์ชนก", "ศรีสุข")),
        patient(thai_name("เด็กหญิงพิมชนก ศรีสุก", "พิมชนก", "ศรีสุก")),
    )
    english = patient(thai_name("Mali Jaidee", "Mali", "Jaidee", extension=[_lang("en")]))
    pairs = [
        spelled,  # prefix and spelling variants: Thai soundex
        (patient(MALI), english),  # Thai and English script: romanised initials
        (patient(MALI, birth="2564-03-15"), patient(MALI, birth="2021-03-15")),  # Buddhist era
        (patient(MALI, birth="2021-03-05"), patient(MALI, birth="2021-05-03")),  # day and month swapped
        (patient(MALI, birth="2021-03-15"), patient(MALI, birth="2020-03-15")),  # a year off
        (patient(MALI, gender=None), patient(MALI)),  # sex unknown on one side
        (patient(thai_name("", "มะลิ")), patient(MALI)),  # family name missing on one side
        (
            patient({"use": "nickname", "given": ["น้องมะลิ"]}),
            patient(MALI, {"use": "nickname", "given": ["มะลิ"]}),
        ),
    ]
    for first, second in pairs:
        assert _meet(first, second) and _meet(second, first), (first, second)
    boy = patient(thai_name("สมชาย ใจดี", "สมชาย", "ใจดี"), gender="male")
    other_day = patient(MALI, birth="2021-08-20")
    assert not _meet(patient(MALI), boy) and not _meet(patient(MALI), other_day)
    # Keys are tokens, not a scan: a name key never reads the other names of the day.
    assert all(k.startswith("2021-03-15/female/") for k in blocking.golden_keys(features(patient(MALI))))


def _identical() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "gender": "female",
        "birthDate": "2020-02-03",
        "name": [{"family": "ศรีสุข", "given": ["นก"]}],
    }


async def test_look_alike_children_keep_a_create_bounded_and_the_queue_beside_the_record(
    world: World,
) -> None:
    count = candidates.BLOCK_LIMIT + 15
    admin = await world.caller("admin", "Organization/ops", "admin")
    health = await world.caller("hc-app", "Organization/hc", "health-centre")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _identical(), "request": {"method": "POST", "url": "Patient"}}] * count,
    }
    reply = await health.post("", bundle)
    assert reply.status_code == 200, reply.text
    search = await admin.get("Patient?_tag=https://termtem.org/fhir/tag/identity|golden&_count=200")
    assert search.status_code == 200, search.text
    goldens = [e["resource"] for e in search.json()["entry"]]
    assert len(goldens) == count  # no national identifier: never linked automatically ...
    store = world.store
    found = await candidates.candidate_goldens(store, features(_identical()))
    assert len(found) == candidates.BLOCK_LIMIT  # ... and a look-up reads a bounded block
    queued = {g: c for g, c in await review.entries(store)}
    assert len(queued) == count - 1  # every later one is queued against earlier ones
    assert max(len(c) for c in queued.values()) <= review.MAX_CANDIDATES
    for golden in goldens:
        body = orjson.dumps(golden).decode()
        assert "th-identity-candidate" not in body  # the queue is not in the record agencies read
        assert any(t["system"] == BLOCK_SYSTEM for t in golden["meta"]["tag"]) or golden["id"] not in queued
    last = max(goldens, key=lambda g: g["meta"]["lastUpdated"])
    assert len(queued[last["id"]]) == review.MAX_CANDIDATES


async def test_clients_cannot_write_blocking_keys(world: World) -> None:
    body = {**_identical(), "meta": {"tag": [{"system": BLOCK_SYSTEM, "code": "2020-02-03/female/*"}]}}
    health = await world.caller("hc-app", "Organization/hc", "health-centre")
    reply = await health.post("Patient", body)
    assert reply.status_code == 422, reply.text
    assert BLOCK_SYSTEM in reply.text


def test_near_cids_are_every_valid_cid_one_slip_away() -> None:
    import random

    from fhir_server.identity import identifiers as ids

    rng = random.Random(14)
    for _ in range(200):
        broken = "".join(str(rng.randrange(10)) for _ in range(13))
        expected = set()
        for i in range(13):
            for d in "0123456789":
                typed = broken[:i] + d + broken[i + 1 :]
                if d != broken[i] and ids.is_valid_cid(typed):
                    expected.add(typed)
            if i < 12 and broken[i] != broken[i + 1]:
                swapped = broken[:i] + broken[i + 1] + broken[i] + broken[i + 2 :]
                if ids.is_valid_cid(swapped):
                    expected.add(swapped)
        assert candidates.near_cids(broken) == sorted(expected), broken
