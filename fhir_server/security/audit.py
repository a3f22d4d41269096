"""AuditEvents for every interaction, denial and token request, written by the server alone.

Each event names who (client and its Organization), what (the resources touched, the children they
belong to, the query), why (purpose of use; emergency access with its reason), the outcome, when and
from where. Entities naming the children make ``AuditEvent?entity=Patient/123`` answer the guardian's
question "who looked at my child's data".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson

from fhir_server import canonical
from fhir_server.interactions import writes
from fhir_server.search.model import IndexRows
from fhir_server.security.audit_index import audit_index_rows
from fhir_server.storage.base import Store, StoredResource, StoreTransaction

CLIENT_ID_SYSTEM = f"{canonical.BASE}/id/client"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "search-type": "E",
    "search-system": "E",
    "search-compartment": "E",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
    "capabilities": "R",
    "login": "E",
}
_LINK_FIELDS = ("subject", "patient", "beneficiary", "for")
MAX_ENTITIES = 200


@dataclass
class AuditRecord:
    """What one request did, gathered while it ran."""

    interaction: str
    outcome_status: int
    client_id: str | None = None
    client_name: str | None = None
    organization: str | None = None
    purpose: str | None = None
    address: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    query: str | None = None
    description: str | None = None
    emergency_reason: str | None = None
    touched: list[tuple[str, str, bytes]] = field(default_factory=list)
    # Refusals the answer did not show (a hidden resource answered exactly as an unknown one).
    denials: list[str] = field(default_factory=list)
    # What the request changed in a workflow (a referral moving from received to accepted, ...).
    notes: list[str] = field(default_factory=list)


def _children(resource_type: str, id_: str, body: bytes) -> set[str]:
    """The children whose data this is (a light look at the usual reference fields)."""
    if resource_type == "Patient":
        return {id_}
    if not body:
        return set()
    found = set()
    resource = orjson.loads(body)
    for name in _LINK_FIELDS:
        value = resource.get(name)
        for ref in value if isinstance(value, list) else [value]:
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target.startswith("Patient/"):
                found.add(target[len("Patient/") :])
    return found


SECRET_PARAMETERS = frozenset(
    {"access_token", "id_token", "refresh_token", "client_assertion", "client_secret", "code", "password"}
)


def redact(query: str) -> str:
    """A query string with the values of secret-bearing parameters replaced, for the audit record."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        plain = unquote_plus(name).split(":", 1)[0].strip().lower()
        if plain in SECRET_PARAMETERS:
            parts.append(f"{name}{sep}REDACTED" if sep else name)
        else:
            parts.append(part)
    return "&".join(parts)


def _outcome(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


def audit_event(record: AuditRecord, recorded: str) -> dict[str, Any]:
    """The AuditEvent resource for ``record``."""
    if record.interaction == "login":
        event_type = {"system": _DCM, "code": "110114", "display": "User Authentication"}
        subtype = {"system": _DCM, "code": "110122", "display": "Login"}
    else:
        event_type = {"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        subtype = {"system": _INTERACTION, "code": record.interaction}
    purpose = (
        [{"coding": [{"system": canonical.V3_ACT_REASON_SYSTEM, "code": record.purpose}]}]
        if record.purpose
        else []
    )
    requestor: dict[str, Any] = {"requestor": True}
    if record.client_id:
        requestor["who"] = {"identifier": {"system": CLIENT_ID_SYSTEM, "value": record.client_id}}
        if record.client_name:
            requestor["who"]["display"] = record.client_name
    else:
        requestor["who"] = {"display": "unauthenticated caller"}
    if record.address:
        requestor["network"] = {"address": record.address, "type": "2"}
    if purpose:
        requestor["purposeOfUse"] = purpose
    agents = [requestor]
    if record.organization:
        agents.append({"who": {"reference": record.organization}, "requestor": False})
    entities: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(reference: str, kind: str, role: str | None = None) -> None:
        if reference in seen or len(entities) >= MAX_ENTITIES:
            return
        seen.add(reference)
        entity: dict[str, Any] = {
            "what": {"reference": reference},
            "type": {"system": _ENTITY_TYPE, "code": kind},
        }
        if role:
            entity["role"] = {"system": _OBJECT_ROLE, "code": role}
        entities.append(entity)

    if record.resource_type and record.resource_id:
        add(f"{record.resource_type}/{record.resource_id}", "1" if record.resource_type == "Patient" else "2")
    for rtype, rid, body in record.touched:
        for child in sorted(_children(rtype, rid, body)):
            add(f"Patient/{child}", "1", "1")
    if not record.interaction.startswith("search"):  # a search is recorded by its query and its children
        for rtype, rid, _ in record.touched:
            add(f"{rtype}/{rid}", "1" if rtype == "Patient" else "2")
    if record.query is not None:
        query = redact(record.query)
        entities.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2"},
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(query.encode()).decode(),
                "description": query[:1000],
            }
        )
    if record.emergency_reason is not None:
        entities.append(
            {
                "description": "Emergency access (ETREAT) without a data-sharing consent",
                "detail": [{"type": "emergency-reason", "valueString": record.emergency_reason[:1000]}],
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": event_type,
        "subtype": [subtype],
        "action": _ACTIONS.get(record.interaction, "E"),
        "recorded": recorded,
        "outcome": "4" if record.denials and record.outcome_status < 400 else _outcome(record.outcome_status),
        "agent": agents,
        "source": {
            "observer": {"display": "Termtem FHIR server"},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    description = record.description or f"HTTP {record.outcome_status}"
    if record.notes and record.outcome_status < 400:
        description = f"{description}; {'; '.join(record.notes)}"
    if record.denials:
        description = (
            f"{description}; refused, answered as for an unknown resource: {'; '.join(record.denials)}"
        )
    event["outcomeDesc"] = description[:1000]
    if purpose:
        event["purposeOfUse"] = purpose
    if entities:
        event["entity"] = entities
    return event


def audit_version(record: AuditRecord) -> tuple[StoredResource, IndexRows]:
    """The stored AuditEvent for ``record`` and its index rows (read from the fields set above)."""
    return writes.first_version("AuditEvent", audit_event(record, writes.now_instant()), audit_index_rows)


async def write_audit(store: Store, record: AuditRecord) -> None:
    """Store the event through the server's own store (never a client's secured view).

    Returns once the event is committed; concurrent requests' events share one commit (group commit).
    """
    await store.append([audit_version(record)])


async def write_audit_in(tx: StoreTransaction, record: AuditRecord) -> None:
    """Store the event inside a write transaction (unguarded), to commit with that write."""
    stored, index = audit_version(record)
    await tx.put(stored, index)
