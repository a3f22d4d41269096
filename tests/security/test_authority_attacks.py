"""Issue 13's attacks on consent and authority, one test each, over HTTP with auth on.

Each attack is refused (with the answer a nonexistent resource gets, where existence could leak) and
recorded as an AuditEvent. The rules are in docs/consent-and-authority.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from joserfc import jwt

from fhir_server.security.access import OWNER_TAG_SYSTEM
from fhir_server.security.authority import CONSENT_AUTHORITY_SYSTEM
from tests.security import scene
from tests.security.conftest import BASE, World


@pytest.fixture
async def s(world: World) -> scene.Scene:
    return await scene.build(world)


async def _events(world: World, client: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await world.audit_events()
        if e["type"]["code"] == "rest" and e["agent"][0]["who"].get("identifier", {}).get("value") == client
    ]


def _whats(event: dict[str, Any]) -> set[str]:
    return {x["what"]["reference"] for x in event.get("entity", []) if "what" in x}


def _same_answer(first: Any, second: Any, first_id: str, second_id: str) -> None:
    """Two answers are identical but for the id the request itself named."""
    assert first.status_code == second.status_code, (first.text, second.text)
    assert first.text.replace(first_id, "ID") == second.text.replace(second_id, "ID")


async def _use(caller: scene.Caller, url: str) -> int:
    return (await caller.get(url)).status_code


# --- attack 1: self-granted consent ---------------------------------------------------------------


async def test_attack_1_self_granted_consent_is_refused(s: scene.Scene) -> None:
    stranger, ids = s.other_school, s.ids  # school2 cannot see child1
    grant = scene.consent("child1", actors=("Organization/school2",), classes=("demographics", "growth"))
    refused = await stranger.post("Consent", grant)
    unknown = await stranger.post(
        "Consent", scene.consent("nobody", actors=("Organization/school2",), classes=("demographics",))
    )
    _same_answer(refused, unknown, "child1", "nobody")
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Consent.patient"]
    assert await _use(stranger, "Patient/child1") == 404
    assert await _use(stranger, f"Observation/{ids['child1-growth']}") == 404
    # An agency that sees the child through a consent does not serve it: it cannot widen its own access.
    widen = scene.consent("child1", actors=("Organization/school1",), classes=("health-condition",))
    reply = await s.school.post("Consent", widen)
    assert reply.status_code == 403 and "serves Patient/child1" in reply.json()["issue"][0]["diagnostics"]
    assert await _use(s.school, f"Observation/{ids['child1-cond']}") == 404
    # A Consent stored without the server's authority mark (written before these rules, by an agency
    # that does not serve the child) takes no part in decisions.
    legacy = {**grant, "id": "legacy-grant"}
    await scene.load_as(s.world, "Organization/school2", legacy)
    stored = await s.world.store.read("Consent", "legacy-grant")
    marked = orjson.loads(stored.body)
    marked["meta"]["tag"] = [t for t in marked["meta"]["tag"] if t["system"] == OWNER_TAG_SYSTEM]
    await _overwrite(s.world, "Consent", "legacy-grant", marked)
    assert await _use(stranger, "Patient/child1") == 404
    # The refusals are audited, naming the child the consent was about.
    events = [e for e in await _events(s.world, "school-b") if e["action"] == "C"]
    assert [e["outcome"] for e in events] == ["4", "4"]
    assert "Patient/child1" in _whats(events[0])


async def _overwrite(world: World, rtype: str, id_: str, resource: dict[str, Any]) -> None:
    """Store a version as written by a server without these rules (no guard, no authority mark)."""
    from fhir_server.interactions import writes

    async with world.store.transaction() as tx:
        current = await tx.read(rtype, id_)
        await writes.write_version(tx, rtype, id_, resource, None, current=current, method="PUT")


async def test_a_serving_agency_records_consent_and_the_server_marks_it(s: scene.Scene) -> None:
    consent = (await s.hospital.get(f"Consent/{s.ids['consent']}")).json()
    assert {"system": CONSENT_AUTHORITY_SYSTEM, "code": "serving-agency"} in consent["meta"]["tag"]
    # A mark sent by a client is never taken as is.
    forged = scene.consent("child1", actors=("Organization/school2",))
    forged["meta"] = {"tag": [{"system": CONSENT_AUTHORITY_SYSTEM, "code": "admin"}]}
    recorded = await s.hospital.create(forged)
    assert [t for t in recorded["meta"]["tag"] if t["system"] == CONSENT_AUTHORITY_SYSTEM] == [
        {"system": CONSENT_AUTHORITY_SYSTEM, "code": "serving-agency"}
    ]
    # A child of 10 or under needs a guardian as the consent's grantor.
    reply = await s.hospital.post("Consent", scene.consent("child1", guardian=None))
    assert reply.status_code == 422 and reply.json()["issue"][0]["expression"] == ["Consent.performer"]
    # An admin records consent for any child.
    by_admin = await s.admin.create(scene.consent("child2", actors=("Organization/school2",)))
    assert {"system": CONSENT_AUTHORITY_SYSTEM, "code": "admin"} in by_admin["meta"]["tag"]
    assert await _use(s.other_school, "Patient/child2") == 200


# --- attack 2: consent sabotage --------------------------------------------------------------------


async def test_attack_2_consent_sabotage_is_refused(s: scene.Scene) -> None:
    school, stranger, ids = s.school, s.other_school, s.ids
    growth = f"Observation/{ids['child1-growth']}"
    assert await _use(school, growth) == 200
    deny = scene.consent("child1", kind="deny", agency_types=("school",), purposes=(), classes=())
    refused = await stranger.post("Consent", deny)
    assert refused.status_code == 422  # child1 is hidden from school2: as for an unknown child
    assert (await school.post("Consent", deny)).status_code == 403  # sees child1, does not serve it
    assert await _use(school, growth) == 200
    # Only the recording agency (or an admin) changes or withdraws a consent.
    current = (await school.get(f"Consent/{ids['consent']}")).json()  # visible to school1 (demographics)
    withdrawn = {**current, "status": "inactive"}
    assert (await school.put(f"Consent/{ids['consent']}", withdrawn)).status_code == 403
    hidden = await stranger.put(f"Consent/{ids['consent']}", withdrawn)
    unknown = await stranger.put("Consent/nothing", {**withdrawn, "id": "nothing"})
    _same_answer(hidden, unknown, ids["consent"], "nothing")
    assert (await stranger.delete(f"Consent/{ids['consent']}")).status_code == 204  # as if absent
    assert await _use(school, growth) == 200  # nothing above changed the consent
    by_admin = await s.admin.put(f"Consent/{ids['consent']}", withdrawn)
    assert by_admin.status_code == 200, by_admin.text
    assert {"system": OWNER_TAG_SYSTEM, "code": "Organization/hosp"} in by_admin.json()["meta"]["tag"]
    assert await _use(school, growth) == 404
    events = await _events(s.world, "school-b")
    assert [e["outcome"] for e in events if e["action"] in ("C", "U", "D")] == ["4", "4", "4", "4"]
    hidden_delete = next(e for e in events if e["action"] == "D")
    assert "hidden" in hidden_delete["outcomeDesc"]


# --- attack 3: agency-type escalation --------------------------------------------------------------


async def test_attack_3_agency_type_comes_from_the_registry(world: World) -> None:
    s = await scene.build(world)
    # school1 keeps its own Organization resource and relabels itself a hospital.
    assert (await s.admin.delete("Organization/school1")).status_code == 204
    await scene.load_as(world, "Organization/school1", scene.agency("school1", "school"))
    await s.hospital.create(
        scene.consent("child1", agency_types=("hospital",), purposes=("COC",), classes=("health-condition",))
    )
    relabelled = scene.agency("school1", "hospital")
    assert (await s.school.put("Organization/school1", relabelled)).status_code == 200
    fresh = await world.caller("school-again", "Organization/school1", "school")
    claims = world.app.state.security.tokens(world.store).verify(fresh.token, BASE)
    assert claims["agency_type"] == "school"
    assert await _use(fresh, f"Observation/{s.ids['child1-cond']}") == 404
    # What the registry says applies from the next token: an administrator's change.
    await world.set_agency("Organization/school1", "hospital")
    assert await _use(fresh, f"Observation/{s.ids['child1-cond']}") == 404  # the old token still says school
    newer = await world.caller("school-third", "Organization/school1", "school")
    assert await _use(newer, f"Observation/{s.ids['child1-cond']}") == 200
    # A client whose agency has no registered type is matched by reference and identifier only.
    await world.set_agency("Organization/school1", None)
    untyped = await world.caller("school-fourth", "Organization/school1", "school")
    assert world.app.state.security.tokens(world.store).verify(untyped.token, BASE)["agency_type"] is None
    assert await _use(untyped, f"Observation/{s.ids['child1-cond']}") == 404
    assert await _use(untyped, "Patient/child1") == 200  # the consent naming Organization/school1
    refused = [e for e in await _events(world, "school-again") if e["outcome"] == "4"]
    assert refused and f"Observation/{s.ids['child1-cond']}" in _whats(refused[0])


# --- attack 4: server-wide configuration and slow patterns ------------------------------------------


def _search_parameter(expression: str) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "url": "https://example.org/fhir/SearchParameter/patient-family",
        "name": "family-pattern",
        "status": "active",
        "description": "whether the family name is all a's",
        "code": "family-pattern",
        "base": ["Patient"],
        "type": "token",
        "expression": expression,
    }


async def test_attack_4_configuration_is_admin_only_and_patterns_are_linear(s: scene.Scene) -> None:
    evil = "Patient.name.family.matches('^(a+)+$')"
    for caller in (s.hospital, s.school):
        reply = await caller.post("SearchParameter", _search_parameter(evil))
        assert reply.status_code == 403, reply.text
        assert "server-wide configuration" in reply.json()["issue"][0]["diagnostics"]
    for rtype, body in (
        ("CodeSystem", {"resourceType": "CodeSystem", "status": "draft", "content": "complete"}),
        ("ValueSet", {"resourceType": "ValueSet", "status": "draft"}),
        ("ConceptMap", {"resourceType": "ConceptMap", "status": "draft"}),
        ("StructureDefinition", {"resourceType": "StructureDefinition"}),
    ):
        assert (await s.hospital.post(rtype, body)).status_code == 403, rtype
    shipped = (await s.hospital.get("SearchParameter?_count=1")).json()["entry"][0]["resource"]
    assert (await s.hospital.delete(f"SearchParameter/{shipped['id']}")).status_code == 403
    # An admin may add one; a pattern RE2 cannot run is refused when written, not when data arrives.
    backreference = await s.admin.post(
        "SearchParameter", _search_parameter("Patient.name.family.matches('(a)\\\\1')")
    )
    assert backreference.status_code == 422, backreference.text
    assert "RE2" in backreference.json()["issue"][0]["diagnostics"]
    added = await s.admin.post("SearchParameter", _search_parameter(evil))
    assert added.status_code == 201, added.text
    # The pattern that doubled its time with every character now runs in linear time: a write that
    # indexes it finishes (a backtracking engine would not finish this in a lifetime).
    patient = {"resourceType": "Patient", "name": [{"family": "a" * 5000 + "!"}]}
    reply = await asyncio.wait_for(s.hospital.post("Patient", patient), timeout=60)
    assert reply.status_code == 201, reply.text
    events = [e for e in await _events(s.world, "hospital") if e["subtype"][0]["code"] == "create"]
    assert events[-1]["outcome"] == "0"
    assert any(e["outcome"] == "4" for e in await _events(s.world, "school"))
    # The parameter is process-wide: remove it again (the admin may).
    assert (await s.admin.delete(f"SearchParameter/{added.json()['id']}")).status_code == 204


# --- attack 5: token audience from the Host header -------------------------------------------------


async def test_attack_5_audience_is_never_the_host_header(s: scene.Scene) -> None:
    world = s.world
    key = world.app.state.security.key
    now = int(time.time())
    other = "http://other.example/fhir"  # another server sharing this signing key
    token = jwt.encode(
        {"alg": "RS384", "kid": key.kid},
        {
            "iss": other,
            "sub": "school",
            "aud": other,
            "exp": now + 60,
            "jti": "x",
            "scope": "system/*.rs",
            "org": "Organization/school1",
        },
        key.private,
        algorithms=["RS384"],
    )
    headers = {"Authorization": f"Bearer {token}", "Host": "other.example"}
    reply = await world.http.get("Patient", headers=headers)
    assert reply.status_code == 401 and "not issued for http://testserver/fhir" in reply.text
    # Discovery names this server, whatever Host says.
    config = (
        await world.http.get(".well-known/smart-configuration", headers={"Host": "evil.example"})
    ).json()
    assert config["token_endpoint"] == "http://testserver/auth/token"
    # A client assertion made for the other server's token endpoint is refused here.
    from fhir_server.cli.clients import client_assertion

    assertion = client_assertion("school", s.school.key_file, "http://other.example/auth/token")
    refused = await world.token_reply("school", s.school.key_file, "system/*.rs", assertion=assertion)
    assert refused.status_code == 401 and "token endpoint http://testserver/auth/token" in refused.text
    events = [e for e in await world.audit_events() if e["outcome"] == "4"]
    assert any(e["type"]["code"] == "110114" for e in events)  # the refused token request
    assert any(e["type"]["code"] == "rest" and "not issued" in e.get("outcomeDesc", "") for e in events)


async def test_a_configured_public_url_is_the_audience(world: World) -> None:
    world.app.state.settings.public_base_url = "https://termtem.example.go.th/fhir"
    key_file = await world.register("c1", "Organization/hosp", "hospital")
    from fhir_server.cli.clients import client_assertion

    here = client_assertion("c1", key_file, "http://testserver/auth/token")
    assert (await world.token_reply("c1", key_file, "system/*.rs", assertion=here)).status_code == 401
    public = client_assertion("c1", key_file, "https://termtem.example.go.th/auth/token")
    reply = await world.token_reply("c1", key_file, "system/*.rs", assertion=public)
    assert reply.status_code == 200, reply.text
    token = reply.json()["access_token"]
    claims = world.app.state.security.tokens(world.store).verify(token, "https://termtem.example.go.th/fhir")
    assert claims["aud"] == "https://termtem.example.go.th/fhir"
    assert (await world.http.get("Patient", headers={"Authorization": f"Bearer {token}"})).status_code == 200


# --- attack 6: referral re-pointing -----------------------------------------------------------------


async def test_attack_6_referral_task_changes_only_as_its_roles_allow(s: scene.Scene) -> None:
    await s.hospital.create(scene.consent("child1", actors=("Organization/school1",), classes=("referral",)))
    request = await s.hospital.create(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/child1"},
            "performer": [{"reference": "Organization/school1"}],
        }
    )
    task = await s.hospital.create(
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "basedOn": [{"reference": f"ServiceRequest/{request['id']}"}],
            "for": {"reference": "Patient/child1"},
            "requester": {"reference": "Organization/hosp"},
            "owner": {"reference": "Organization/school1"},
        }
    )
    url = f"Task/{task['id']}"
    seen = (await s.school.get(url)).json()
    own_child = await s.school.create({"resourceType": "Patient", "gender": "male"})
    for element, value in (
        ("for", {"reference": "Patient/child2"}),  # a child the school cannot see
        ("for", {"reference": f"Patient/{own_child['id']}"}),  # even one it can
        ("focus", {"reference": f"ServiceRequest/{request['id']}"}),
        ("requester", {"reference": "Organization/school1"}),
        ("basedOn", None),  # dropped (an empty array is not valid JSON for FHIR)
        ("owner", {"reference": "Organization/school2"}),
    ):
        changed = {k: v for k, v in seen.items() if k != element}
        if value is not None:
            changed[element] = value
        reply = await s.school.put(url, changed)
        assert reply.status_code == 403, (element, reply.text)
        assert f"Task.{element}" in reply.json()["issue"][0]["diagnostics"]
    received = await s.school.put(
        url, {**seen, "status": "received", "businessStatus": {"text": "seen by the school nurse"}}
    )
    assert received.status_code == 200, received.text
    stored = (await s.hospital.get(url)).json()
    assert stored["for"] == {"reference": "Patient/child1"} and stored["status"] == "received"
    # The ServiceRequest is the requester's alone.
    referral = (await s.school.get(f"ServiceRequest/{request['id']}")).json()
    moved = await s.school.put(f"ServiceRequest/{request['id']}", {**referral, "status": "completed"})
    assert moved.status_code == 403
    # The requester changes what it asked for.
    repointed = await s.hospital.put(url, {**stored, "for": {"reference": "Patient/child2"}})
    assert repointed.status_code == 200, repointed.text
    updates = [e for e in await _events(s.world, "school") if e["action"] == "U"]
    assert [e["outcome"] for e in updates] == ["4"] * 6 + ["0", "4"]


# --- attack 7: existence oracles --------------------------------------------------------------------


async def test_attack_7_hidden_answers_exactly_as_unknown(s: scene.Scene) -> None:
    stranger, ids = s.other_school, s.ids
    pairs = [("Patient/child2", "Patient/nobody"), (f"Observation/{ids['child2-cond']}", "Observation/none")]
    for hidden, unknown in pairs:
        for suffix in ("", "/_history", "/_history/1"):
            _same_answer(
                await stranger.get(hidden + suffix), await stranger.get(unknown + suffix), hidden, unknown
            )
        _same_answer(await stranger.delete(hidden), await stranger.delete(unknown), hidden, unknown)
        patch = orjson.dumps([{"op": "replace", "path": "/id", "value": "x"}])
        patched = []
        for target in (hidden, unknown):
            reply = await stranger.http.patch(
                target,
                content=patch,
                headers=stranger.headers({"Content-Type": "application/json-patch+json"}),
            )
            patched.append(reply)
        _same_answer(*patched, hidden, unknown)
    assert (await stranger.get("Patient/child2/$everything")).status_code == 404
    # Update-as-create: a hidden id and a free id get the same refusal, so neither reveals anything.
    hidden_put = await stranger.put("Patient/child2", {"resourceType": "Patient", "id": "child2"})
    free_put = await stranger.put("Patient/nobody", {"resourceType": "Patient", "id": "nobody"})
    _same_answer(hidden_put, free_put, "child2", "nobody")
    assert hidden_put.status_code == 405 and "POST" in hidden_put.json()["issue"][0]["diagnostics"]
    # The same through a conditional update naming the id in its body.
    conditional = [
        await stranger.put(
            f"Patient?identifier=urn:x|{i}",
            {"resourceType": "Patient", "id": i, "identifier": [{"system": "urn:x", "value": i}]},
        )
        for i in ("child2", "nobody")
    ]
    _same_answer(*conditional, "child2", "nobody")
    # Writing about a child: a hidden child and a missing one get the same 422.
    about_hidden = await stranger.post("Observation", scene.observation("child2", None, "note"))
    about_missing = await stranger.post("Observation", scene.observation("nobody", None, "note"))
    _same_answer(about_hidden, about_missing, "child2", "nobody")
    assert about_hidden.status_code == 422
    assert about_hidden.json()["issue"][0]["expression"] == ["Observation.subject"]
    # ... the same inside a transaction, where nothing at all is stored.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": scene.observation("child2", None, "note"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert (await stranger.post("", bundle)).status_code == 422
    assert (await stranger.get("Patient?_summary=count")).json()["total"] == 0
    # A child created in the same transaction is the writer's own: data about it is accepted.
    own = "urn:uuid:7d0c4e52-1f4b-4a8e-9a57-3f1f4f3b2a10"
    bundle["entry"][0]["fullUrl"] = own
    bundle["entry"][1]["resource"] = {**scene.observation("x", None, "note"), "subject": {"reference": own}}
    assert (await stranger.post("", bundle)).status_code == 200
    # The writing agency, and an agency that sees the child, still write about it.
    assert (await s.hospital.post("Observation", scene.observation("child2", None, "ok"))).status_code == 201
    assert (await s.school.post("Observation", scene.observation("child1", None, "ok"))).status_code == 201
    # Audited: the refusals name the hidden child and say so (the answer does not).
    events = await _events(s.world, "school-b")
    writes_about = [e for e in events if e["action"] == "C" and "Patient/child2" in _whats(e)]
    assert writes_about and all(e["outcome"] == "4" for e in writes_about)
    deletes = [e for e in events if e["action"] == "D" and "Patient/child2" in _whats(e)]
    assert deletes[0]["outcome"] == "4" and "hidden" in deletes[0]["outcomeDesc"]
    missing = [e for e in events if e["action"] == "D" and "Patient/nobody" in _whats(e)]
    assert missing[0]["outcome"] == "0"


# --- attack 8: consents cancelling each other -------------------------------------------------------


def _deny_but_permit(child: str, agency: str) -> dict[str, Any]:
    permit = scene.consent(child, actors=(agency,), classes=("demographics", "growth"))["provision"]
    return scene.consent(child, kind="deny", purposes=(), classes=(), period=(None, None), nested=[permit])


async def test_attack_8_consents_add_up_and_never_cancel(s: scene.Scene) -> None:
    growth = f"Observation/{s.ids['child2-growth']}"
    first = await s.hospital.create(_deny_but_permit("child2", "Organization/school1"))
    await s.hospital.create(_deny_but_permit("child2", "Organization/school2"))
    assert await _use(s.school, growth) == 200
    assert await _use(s.other_school, growth) == 200
    childcare = await s.world.caller("cc-app", "Organization/cc", "childcare")
    assert await _use(childcare, growth) == 404  # neither consent permits it
    # An explicit refusal still wins over every permission.
    await s.hospital.create(
        scene.consent("child2", kind="deny", actors=("Organization/school2",), purposes=(), classes=())
    )
    assert await _use(s.other_school, growth) == 404
    assert await _use(s.school, growth) == 200
    withdrawn = {**first, "status": "inactive"}
    assert (await s.hospital.put(f"Consent/{first['id']}", withdrawn)).status_code == 200
    assert await _use(s.school, growth) == 404
    denied = [e for e in await _events(s.world, "school-b") if e["outcome"] == "4"]
    assert growth in _whats(denied[-1])


# --- consents naming agencies, and tokens in URLs ---------------------------------------------------


async def test_a_consent_naming_agencies_applies_to_exactly_those(s: scene.Scene) -> None:
    world = s.world
    await world.set_agency("Organization/school2", "school", "https://example.go.th/id/school|S-2")
    school2 = await world.caller("school2-app", "Organization/school2", "school")
    # By reference, with an agency type too: only the named school, not every school.
    both = scene.consent("child2", agency_types=("school",), actors=("Organization/school1",))
    both["provision"]["code"].append({"coding": [{"system": scene.DATA_CLASS, "code": "referral"}]})
    await s.hospital.create(both)
    task = await s.hospital.create(
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": "Patient/child2"},
            "owner": {"reference": "Organization/school1"},
        }
    )
    assert await _use(s.school, "Patient/child2") == 200
    assert await _use(s.school, f"Task/{task['id']}") == 200
    assert await _use(school2, "Patient/child2") == 404
    assert await _use(school2, f"Task/{task['id']}") == 404
    # By identifier: the registry's identifiers of the caller's agency, never its own Organization's.
    by_id = scene.consent("child1", classes=("demographics",))
    by_id["provision"]["actor"] = [
        {
            "role": {"coding": [{"system": scene.PARTICIPATION_SYSTEM, "code": "IRCP"}]},
            "reference": {"identifier": {"system": "https://example.go.th/id/school", "value": "S-2"}},
        }
    ]
    await s.hospital.create(by_id)
    assert await _use(school2, "Patient/child1") == 200
    await world.set_agency("Organization/cc", "childcare-centre")
    childcare = await world.caller("cc-app", "Organization/cc", "childcare")
    assert await _use(childcare, "Patient/child1") == 404


async def test_token_in_the_url_is_refused_and_never_stored(s: scene.Scene) -> None:
    token = s.school.token
    alone = await s.school.http.get(f"Patient?access_token={token}")
    assert alone.status_code == 401 and "Authorization header" in alone.text
    both = await s.school.get(f"Patient?access_token={token}")
    assert both.status_code == 401
    assert (await s.school.get(f"Patient/child1?access_token={token}")).status_code == 401
    events = await s.world.audit_events()
    assert token not in orjson.dumps(events).decode()
    queries = [ent["description"] for e in events for ent in e.get("entity", []) if "query" in ent]
    assert "access_token=REDACTED" in queries
