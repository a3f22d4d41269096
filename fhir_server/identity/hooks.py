"""Where the write path hands Patient changes to the identity layer.

``writes.write_version`` and ``writes.delete_version`` call ``before_write``/``after_write`` for
Patients and RelatedPersons. Inside ``writes.transaction`` the changed records are collected and linked
once, just before the transaction commits (a bundle that writes a child and two guardians makes one
golden version, not three); a write in any other transaction is linked at once, so no writer can
bypass linking.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.identity import identifiers as ids
from fhir_server.identity import linker
from fhir_server.identity.model import is_golden, ref_id, server_tag_systems
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import StoredResource

WATCHED = ("Patient", "RelatedPerson")


@dataclass
class _Pending:
    patients: dict[str, None] = field(default_factory=dict)  # changed source ids, in write order
    written: set[str] = field(default_factory=set)  # of those, the ones written (not deleted)
    created: set[str] = field(default_factory=set)  # of those, the ones created in this transaction


_pending: weakref.WeakKeyDictionary[Any, _Pending] = weakref.WeakKeyDictionary()


class IdentityConflict(FhirError):
    """Two records written in one transaction claim the same national identifier."""

    def __init__(self, first: str, second: str, identifier: ids.NationalId) -> None:
        self.sources = (first, second)
        self.identifier = identifier
        super().__init__(
            409,
            f"Patient/{first} and Patient/{second} are written in one transaction and both carry"
            f" {identifier.kind.upper()} {identifier.value} ({identifier.system}): one child has one"
            " record per agency, so the second would be a duplicate. Send the child once (a conditional"
            " create or update on the identifier finds the agency's own record).",
            code="duplicate",
            expression=["Patient.identifier"],
        )


def unguarded(tx: Any) -> Any:
    """The transaction without the caller's restrictions: golden records are the server's own."""
    return getattr(tx, "unguarded", tx)


def _record(tx: Any, stored: StoredResource) -> None:
    """Name the golden records a request changed in its AuditEvent."""
    record = getattr(tx, "record_server_write", None)
    if record is not None:
        record(stored)


def before_write(
    resource_type: str, id_: str, resource: dict[str, Any] | None, current: StoredResource | None
) -> None:
    """Refuse client writes to golden records (server-managed) and identity tags in client content."""
    if resource_type != "Patient":
        return
    if current is not None and current.body and is_golden(orjson.loads(current.body)):
        raise FhirError(
            409,
            f"Patient/{id_} is a golden record managed by the server (it merges the identity of linked"
            " source records); change the source records, or use the data-steward operations"
            " ($identity-link, $identity-unlink, $identity-merge)",
            code="conflict",
        )
    if resource is not None and (systems := server_tag_systems(resource)):
        raise FhirError(
            422,
            f"Tags of the system {', '.join(sorted(systems))} are set by the server only",
            code="business-rule",
            expression=["Patient.meta.tag"],
        )


def _changed_patient(resource_type: str, id_: str, body: dict[str, Any]) -> str | None:
    if resource_type == "Patient":
        return id_
    return ref_id(body.get("patient"))


async def after_write(tx: Any, stored: StoredResource, resource: dict[str, Any] | None) -> None:
    """Note (or, outside ``deferred``, link at once) the child a Patient or RelatedPerson write touches."""
    body = resource if resource is not None else {}
    patient = _changed_patient(stored.resource_type, stored.id, body)
    if patient is None:
        return
    pending = _pending.get(tx)
    settle_now = pending is None
    if pending is None:
        pending = _Pending()
    pending.patients[patient] = None
    if stored.resource_type == "Patient":
        if stored.deleted:
            pending.written.discard(patient)
            pending.created.discard(patient)
        else:
            pending.written.add(patient)
            if stored.version == 1:
                pending.created.add(patient)
    if settle_now:
        await settle(tx, pending)


async def _same_transaction_duplicates(tx: Any, written: set[str]) -> None:
    claimed: dict[ids.NationalId, str] = {}
    for sid in sorted(written):
        stored = await tx.read("Patient", sid)
        if stored is None or stored.deleted:
            continue
        resource = orjson.loads(stored.body)
        if is_golden(resource):
            continue
        for nid in ids.national_ids(resource):
            if nid in claimed and claimed[nid] != sid:
                raise IdentityConflict(claimed[nid], sid, nid)
            claimed[nid] = sid


async def settle(tx: Any, pending: _Pending) -> linker.LinkReport:
    raw = unguarded(tx)
    if len(pending.written) > 1:
        await _same_transaction_duplicates(raw, pending.written)
    report = linker.LinkReport()
    for patient in pending.patients:
        await linker.link_source(raw, patient, report, created_here=patient in pending.created)
    for stored in report.written:
        _record(tx, stored)
    return report


@asynccontextmanager
async def deferred(tx: Any) -> AsyncIterator[None]:
    """Collect identity changes made in ``tx`` and link them before it commits."""
    pending = _Pending()
    _pending[tx] = pending
    try:
        yield
        if pending.patients:
            await settle(tx, pending)
    finally:
        _pending.pop(tx, None)
