"""AuditEvent index rows made from the event's known fields equal the generic extractor's, always.

Every kind of AuditEvent the server writes (reads, searches, writes, bundles, operations, refusals,
hidden resources, emergency access, failed logins) is caught on its way to the store and its rows are
compared with ``extract_index`` on the same event; a search parameter on AuditEvent the direct builder
does not know (a custom SearchParameter posted at runtime) sends every event back to the generic
extractor, and its rows are there.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server import canonical
from fhir_server.search import extract, registry
from fhir_server.security import audit, audit_index
from tests.security import scene
from tests.security.conftest import World

_AUDIT_CUSTOM_URL = f"{canonical.BASE}/SearchParameter/test-audit-outcome-desc"


def _same(event: dict[str, Any]) -> None:
    direct = audit_index.audit_index_rows(event)
    generic = extract.extract_index(event)
    assert direct == generic, orjson.dumps(event).decode()


@pytest.fixture
def caught(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], Any]]:
    """Every AuditEvent the server stores, with the rows it stores it with."""
    seen: list[tuple[dict[str, Any], Any]] = []
    build = audit.audit_version

    def spy(record: audit.AuditRecord) -> Any:
        stored, rows = build(record)
        seen.append((orjson.loads(stored.body), rows))
        return stored, rows

    monkeypatch.setattr(audit, "audit_version", spy)
    return seen


async def _every_kind(world: World, s: scene.Scene) -> None:
    """One request of each kind that ends in an AuditEvent, with auth on."""
    hospital, school, admin = s.hospital, s.school, s.admin
    growth = s.ids["child1-growth"]
    assert (await hospital.get(f"Observation/{growth}")).status_code == 200  # read
    assert (await hospital.get(f"Observation/{growth}/_history/1")).status_code == 200  # vread
    assert (await hospital.get(f"Observation/{growth}/_history")).status_code == 200  # history
    reply = await hospital.get("Observation?subject=Patient/child1&code=x&access_token=no")
    assert reply.status_code == 401  # a secret in the URL: refused and audited, redacted
    assert (await hospital.get("Observation?subject=Patient/child1&_count=2")).status_code == 200
    reply = await hospital.http.post(
        "Observation/_search",
        content=b"subject=Patient/child2",
        headers=hospital.headers({"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert reply.status_code == 200  # search by POST
    assert (await hospital.get("?_type=Observation,Patient&_count=3")).status_code in (200, 400)
    created = await hospital.create(scene.observation("child1", None, "a note"))  # create
    note = f"Observation/{created['id']}"
    assert (await hospital.put(note, {**created, "status": "amended"})).status_code == 200  # update
    patched = await hospital.http.patch(
        note,
        content=orjson.dumps([{"op": "replace", "path": "/status", "value": "corrected"}]),
        headers=hospital.headers({"Content-Type": "application/json-patch+json"}),
    )
    assert patched.status_code == 200, patched.text  # patch
    assert (await hospital.delete(note)).status_code in (200, 204)  # delete
    entry = {"resource": scene.observation("child2", None, "in a bundle"), "request": {"method": "POST"}}
    entry["request"]["url"] = "Observation"
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        assert (await hospital.post("", bundle)).status_code == 200  # transaction, batch
    assert (await hospital.get("Patient/child1/$everything")).status_code == 200  # operation
    assert (await school.get(f"Observation/{s.ids['child2-cond']}")).status_code == 404  # hidden
    assert (await school.get("Observation?subject=Patient/child1")).status_code == 200  # consented
    refused = await school.post("Observation", scene.observation("child2", None, "about a hidden child"))
    assert refused.status_code == 422  # a write about a child it may not see
    assert (await school.delete(f"Observation/{growth}")).status_code == 403  # refused
    reply = await hospital.get(
        f"Observation/{growth}", x_purpose_of_use="ETREAT", x_emergency_reason="unconscious child"
    )
    assert reply.status_code == 200  # emergency access
    assert (await world.http.get(f"Observation/{growth}")).status_code == 401  # no token
    bad = await world.http.get("Patient/child1", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    refused = await world.token_reply("hospital", hospital.key_file, "system/*.rs", assertion="x.y.z")
    assert refused.status_code in (400, 401)  # failed login
    assert (await admin.get("AuditEvent?_count=5")).status_code == 200  # searching the audit itself
    assert (await hospital.get("Observation?date=notadate")).status_code == 400  # bad input


async def test_every_event_the_server_writes_is_indexed_as_the_generic_extractor_would(
    world: World, caught: list[tuple[dict[str, Any], Any]]
) -> None:
    s = await scene.build(world)
    await _every_kind(world, s)
    assert audit_index.uses_direct_rows()
    kinds = {e["subtype"][0]["code"] for e, _ in caught}
    assert {
        "read", "vread", "history-instance", "search-type", "create", "update", "patch", "delete",
        "transaction", "operation", "110122",
    } <= kinds, kinds  # fmt: skip
    assert {e["outcome"] for e, _ in caught} >= {"0", "4"}
    assert any("emergency-reason" in str(e.get("entity")) for e, _ in caught)
    assert any("refused" in e.get("outcomeDesc", "") for e, _ in caught)  # a hidden resource
    assert any(a.get("network") for e, _ in caught for a in e["agent"])
    for event, rows in caught:
        assert rows == extract.extract_index(event), orjson.dumps(event).decode()
        assert rows.count() >= 8  # not an empty index that would also "match"
    stored = [e["id"] for e in await world.audit_events()]
    assert {e["id"] for e, _ in caught} <= set(stored)


async def test_the_direct_rows_do_not_run_the_generic_extractor(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of the change: with the core parameters active, no AuditEvent goes through the paths."""
    s = await scene.build(world)
    generic = extract.extract_index

    def refuse_audit_events(resource: dict[str, Any]) -> Any:
        assert resource.get("resourceType") != "AuditEvent", "an AuditEvent went to the generic extractor"
        return generic(resource)

    monkeypatch.setattr(extract, "extract_index", refuse_audit_events)
    assert (await s.hospital.get(f"Observation/{s.ids['child1-growth']}")).status_code == 200
    assert (await s.hospital.create(scene.observation("child1", None, "note")))["id"]


def test_the_direct_builder_knows_every_core_auditevent_parameter() -> None:
    """A core parameter added to the definitions fails here (events would silently take the slow path)."""
    active = {
        p.code: (p.type, p.expression)
        for p in registry.parameters_for("AuditEvent").values()
        if p.code not in extract.TABLE_PARAMETERS
    }
    known = {code: (kind, expression) for code, (kind, expression, _) in audit_index._KNOWN.items()}
    assert active == known
    assert audit_index.uses_direct_rows()


async def test_a_custom_auditevent_parameter_posted_at_runtime_is_indexed(
    world: World, caught: list[tuple[dict[str, Any], Any]]
) -> None:
    s = await scene.build(world)
    parameter = {
        "resourceType": "SearchParameter",
        "url": _AUDIT_CUSTOM_URL,
        "name": "outcomeDescription",
        "status": "active",
        "description": "What an AuditEvent says about its outcome",
        "code": "outcome-desc",
        "base": ["AuditEvent"],
        "type": "string",
        "expression": "AuditEvent.outcomeDesc",
    }
    try:
        reply = await s.admin.post("SearchParameter", parameter)
        assert reply.status_code == 201, reply.text
        assert not audit_index.uses_direct_rows()
        caught.clear()
        assert (await s.hospital.get(f"Observation/{s.ids['child1-growth']}")).status_code == 200
        key = registry.get("AuditEvent", "outcome-desc")
        assert key is not None
        for event, rows in caught:
            assert rows == extract.extract_index(event)
            assert [r for r in rows.string if r[0] == key.key], "the custom parameter has no rows"
        retired = {**reply.json(), "status": "retired"}
        assert (await s.admin.put(f"SearchParameter/{retired['id']}", retired)).status_code == 200
        assert audit_index.uses_direct_rows()
    finally:
        registry.unregister_custom(_AUDIT_CUSTOM_URL)
    assert audit_index.uses_direct_rows()


def _records() -> list[audit.AuditRecord]:
    """Records of every shape ``audit_event`` takes, filled field by field."""
    body = orjson.dumps({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}})
    full = audit.AuditRecord(
        interaction="search-type",
        outcome_status=200,
        client_id="hospital",
        client_name="Hospital ไทย",
        organization="Organization/hosp",
        purpose="COC",
        address="10.0.0.7",
        resource_type="Observation",
        query="subject=Patient/p1&client_secret=s3cret&name=ก" + "x" * 2000,
        description="ok",
        emergency_reason="unconscious",
        touched=[("Observation", "o1", body), ("Patient", "p2", b""), ("Consent", "c1", b"")],
        denials=["Observation/o9 exists but is hidden from this client"],
        notes=["referral accepted"],
    )
    records = [full, audit.AuditRecord(interaction="login", outcome_status=401, address="127.0.0.1")]
    for interaction in audit._ACTIONS:
        records.append(
            audit.AuditRecord(
                interaction=interaction,
                outcome_status=403 if interaction == "delete" else 201,
                client_id="school",
                organization="Organization/school1",
                resource_type="Patient" if interaction != "operation" else None,
                resource_id="p1" if interaction in ("read", "update", "delete") else None,
                touched=[("Patient", "p1", b"{}"), ("Observation", "o2", body)],
            )
        )
    many = [("Observation", f"o{n}", body) for n in range(audit.MAX_ENTITIES + 20)]
    records.append(audit.AuditRecord(interaction="read", outcome_status=500, touched=many))
    return records


def test_every_record_shape_gives_the_generic_rows() -> None:
    for record in _records():
        stored, rows = audit.audit_version(record)
        event = orjson.loads(stored.body)
        assert rows == extract.extract_index(event)


@pytest.mark.parametrize(
    "change",
    [
        lambda e: e["meta"].update(tag=[{"system": "urn:t", "code": "x", "display": "X"}], profile=["urn:p"]),
        lambda e: e["meta"].update(security=[{"code": "R"}], source="urn:s"),
        lambda e: e["agent"][0].update(
            name="nurse", altId="a1", policy=["urn:policy"], role=[{"coding": [{"code": "r"}], "text": "R"}]
        ),
        lambda e: e["agent"][0].update(who={"reference": "Patient/p9", "identifier": {"value": "9"}}),
        lambda e: e["agent"][0].update(who={"reference": "#c1"}),
        lambda e: e.update(contained=[{"resourceType": "Patient", "id": "c1"}]),
        lambda e: e["entity"].append({"what": {"reference": "http://x.org/fhir/Patient/p3/_history/2"}}),
        lambda e: e["entity"].append({"what": {"type": "Patient", "identifier": {"system": "urn:s"}}}),
        lambda e: e["entity"].append({"what": {"reference": "urn:uuid:1234"}, "name": "n", "role": "bad"}),
        lambda e: e["entity"].append({"type": True, "role": {"display": "only a display"}}),
        lambda e: e.update(action=True, outcome=8, recorded="2024-02", subtype="odd"),
        lambda e: e.update(source={"observer": {"reference": "Device/d1"}, "site": "ward 7"}),
        lambda e: e["agent"].append({"network": [{"address": "a"}, None, {"address": ["b", None]}]}),
        lambda e: e.update(agent=None, entity=[None, "x", {}]),
    ],
)
def test_unusual_shapes_give_the_generic_rows(change: Any) -> None:
    stored, _ = audit.audit_version(_records()[0])
    event = orjson.loads(stored.body)
    change(event)
    _same(event)


@pytest.mark.parametrize(
    "instant",
    [
        "2026-11-29T09:17:03.123Z",
        "2024-02-29T23:59:59.999Z",
        "2023-02-29T10:00:00.000Z",  # no such day
        "2026-12-31T23:59:59.999Z",
        "0001-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
        "0000-01-01T00:00:00.000Z",
        "2026-11-29T24:00:00.000Z",
        "2026-11-29T09:17:60.000Z",
        "2026-11-29T09:17:03.12Z",
        "2026-11-29T09:17:03.123+07:00",
        "2026-11-29T09:17:03Z",
        "2026-11-29",
    ],
)
def test_recorded_instants_give_the_generic_date_bounds(instant: str) -> None:
    from fhir_server.search.values import date_range

    assert audit_index._instant_bounds(instant) == date_range(instant)
