"""Referral integrity: what the agency a referral is assigned to may change, and what stays the requester's.

A referral is written by the requesting agency (the server's writing-agency tag records it). The agency
it is assigned to (``Task.owner``) works on it by updating the Task, but only the elements that report
its work; who the referral is about (``for``, ``focus``), who asked (``requester``), what it fulfils
(``basedOn``) and to whom it is assigned (``owner``) change only by the requester. A ServiceRequest is
changed by its requester alone: the performer reports through the Task that fulfils it.

``workflow/`` (the referral workflow) extends the tables here rather than adding rules elsewhere.
"""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.writes import SERVER_TAG_PREFIX

# Per resource type: the elements the assigned agency may change (every other element must stay as is).
ASSIGNEE_MAY_CHANGE: dict[str, frozenset[str]] = {
    "Task": frozenset(
        {
            "status",
            "statusReason",
            "businessStatus",
            "output",
            "note",
            "executionPeriod",
            "lastModified",
            "relevantHistory",
        }
    ),
}


def assigned_agency(resource_type: str, resource: dict[str, Any]) -> str | None:
    """The ``Organization/ID`` a referral is assigned to, when it names one."""
    if resource_type != "Task":
        return None
    owner = resource.get("owner")
    ref = owner.get("reference") if isinstance(owner, dict) else None
    return ref if isinstance(ref, str) and ref.startswith("Organization/") else None


def _client_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    tags = [
        t
        for t in meta.get("tag", [])
        if isinstance(meta.get("tag"), list)
        if not (isinstance(t, dict) and str(t.get("system", "")).startswith(SERVER_TAG_PREFIX))
    ]
    meta.pop("tag", None)
    if tags:
        meta["tag"] = tags
    return meta


def assignee_refusal(
    resource_type: str, current: dict[str, Any], new: dict[str, Any], organization: str
) -> str | None:
    """None when ``organization`` may make this change as the assigned agency; else the reason why not."""
    allowed = ASSIGNEE_MAY_CHANGE.get(resource_type)
    if allowed is None or assigned_agency(resource_type, current) != organization:
        return f"only the agency that wrote this {resource_type} may change it"
    changed = sorted(
        name
        for name in set(current) | set(new)
        if name not in allowed
        and name not in ("meta", "id", "resourceType")
        and current.get(name) != new.get(name)
    )
    if _client_meta(current) != _client_meta(new):
        changed.append("meta")
    if changed:
        elements = ", ".join(f"{resource_type}.{name}" for name in changed)
        may = ", ".join(sorted(allowed))
        return (
            f"the agency a referral is assigned to may change only {may}; {elements} change only by"
            " the requesting agency"
        )
    return None
