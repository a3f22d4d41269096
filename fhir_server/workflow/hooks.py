"""The two calls the write path makes into the workflow (see the package docstring)."""

from __future__ import annotations

from typing import Any

from fhir_server.storage.base import StoredResource, StoreTransaction
from fhir_server.workflow import agencies, referrals

_TYPES = frozenset({"Task", "ServiceRequest", *agencies.AGENCY_ELEMENTS})


async def prepare_write(
    store: Any,
    tx: StoreTransaction,
    resource_type: str,
    resource: dict[str, Any],
    current: StoredResource | None,
) -> set[str]:
    """Check and complete a version before it is compared and stored; returns the top-level members
    it changed (``meta`` changes need no mention: the server writes ``meta`` itself)."""
    if resource_type not in _TYPES:
        return set()
    changed = await agencies.resolve_for_write(store, resource_type, resource)
    if resource_type == "Task":
        changed |= await referrals.prepare_task(tx, resource, current)
    elif resource_type == "ServiceRequest":
        referrals.mark_changed_by(tx, resource)
    return changed


async def after_write(tx: StoreTransaction, stored: StoredResource, current: StoredResource | None) -> None:
    """Consequences of a stored version, in the same transaction."""
    if stored.deleted:
        return
    if stored.resource_type == "Task":
        await referrals.after_task_write(tx, stored, current)
    elif stored.resource_type == "QuestionnaireResponse":
        from fhir_server.workflow import help_requests

        await help_requests.after_response_write(tx.store, tx, stored, current)
