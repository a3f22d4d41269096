"""Referral integrity: what the agency a referral is assigned to may change, and what stays the requester's.

A referral is written by the requesting agency (the server's writing-agency tag records it). The agency
it is assigned to (``Task.owner``) works on it by updating the Task, but only the elements that report
its work; who the referral is about (``for``, ``focus``), who asked (``requester``), what it fulfils
(``basedOn``) and to whom it is assigned (``owner``) change only by the requester. A ServiceRequest is
changed by its requester alone: the performer reports through the Task that fulfils it (the server
keeps the ServiceRequest's status in step, ``workflow/referrals.py``).

The Task's status moves only along ``TRANSITIONS``, each edge by the party it names: the assigned
agency receives, accepts, rejects, starts, pauses, resumes, completes or fails it; the requester
sends a draft, cancels an open referral or marks its own record entered-in-error. ``STATUS_NEEDS``
names what a status requires (a reason to reject or fail, an output to complete). The guard applies
who-may (``transition_role_refusal``); the write path applies the graph for every writer
(``transition_problem``), so it holds with auth off and in bundles too.
"""

from __future__ import annotations

from dataclasses import dataclass
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


OWNER = "owner"  # the agency the referral is assigned to (Task.owner)
REQUESTER = "requester"  # the agency that wrote the referral (its writing-agency tag)

# Statuses in which a referral still waits for someone to act ("ready" only comes from older data).
OPEN_STATUSES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")
# What an agency client creates a referral Task in: it is sent (requested) or prepared (draft).
CREATE_STATUSES = ("draft", "requested")
_HOLDABLE = ("received", "accepted", "ready", "in-progress")
_EVERY = ("draft", *OPEN_STATUSES, "rejected", "completed", "failed", "cancelled")

# (from, to) -> the party who may move a Task along that edge. Nothing else is an edge.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("draft", "requested"): REQUESTER,
    ("requested", "received"): OWNER,
    ("received", "accepted"): OWNER,
    ("received", "rejected"): OWNER,
    ("accepted", "in-progress"): OWNER,
    ("ready", "in-progress"): OWNER,
    ("in-progress", "completed"): OWNER,
    ("in-progress", "failed"): OWNER,
    # The owner pauses the work and resumes it where it stopped (the server remembers where: held-from).
    **{(status, "on-hold"): OWNER for status in _HOLDABLE},
    **{("on-hold", status): OWNER for status in _HOLDABLE},
    ("on-hold", "failed"): OWNER,
    # Only the requester withdraws a referral that is still open, or marks its record as a mistake.
    **{(status, "cancelled"): REQUESTER for status in ("draft", *OPEN_STATUSES)},
    **{(status, "entered-in-error"): REQUESTER for status in _EVERY},
}
# A status and the element it cannot be reached without.
STATUS_NEEDS: dict[str, tuple[str, str]] = {
    "rejected": ("statusReason", "a reason (Task.statusReason) is required to reject a referral"),
    "failed": ("statusReason", "a reason (Task.statusReason) is required when a referral fails"),
    "completed": (
        "output",
        "a completed referral must say what was done: Task.output referring to it (an Encounter, a report)",
    ),
}


@dataclass(frozen=True)
class Refusal:
    """Why a referral change is refused: HTTP status, message and the element at fault."""

    status: int
    message: str
    expression: str


def _present(value: Any) -> bool:
    return value not in (None, "", [], {})


def transition_problem(
    before: str | None,
    after: str,
    resource: dict[str, Any],
    *,
    held_from: str | None = None,
    new_by_agency: bool = False,
) -> Refusal | None:
    """None when a Task may go from ``before`` (None: a new Task) to ``after`` with this content.

    ``new_by_agency``: a new Task written by an agency client, which starts at ``CREATE_STATUSES``
    (administrators and in-process loads may bring referrals in any state, e.g. from older systems).
    """
    if before is not None and before != after:
        if (before, after) not in TRANSITIONS:
            allowed = sorted(t for f, t in TRANSITIONS if f == before)
            then = f"from {before} it may go to {', '.join(allowed)}" if allowed else f"{before} is final"
            return Refusal(
                409, f"A referral task cannot go from {before} to {after} ({then})", "Task.status"
            )
        if before == "on-hold" and after != "failed" and held_from and after != held_from:
            return Refusal(
                409,
                f"A referral task put on hold from {held_from} resumes as {held_from}, not {after}",
                "Task.status",
            )
    if before is None and new_by_agency and "owner" in resource and after not in CREATE_STATUSES:
        return Refusal(
            422,
            f"A new referral task is sent as 'requested' (or prepared as 'draft'), not '{after}':"
            " the agency it is assigned to moves it on",
            "Task.status",
        )
    if before is not None and before != after and after in STATUS_NEEDS:
        element, message = STATUS_NEEDS[after]
        if not _present(resource.get(element)):
            return Refusal(422, message, f"Task.{element}")
    return None


def transition_role_refusal(
    current: dict[str, Any], new: dict[str, Any], organization: str, *, is_requester: bool
) -> str | None:
    """None when ``organization`` may make the Task's status change; else why not (for a 403)."""
    before, after = current.get("status"), new.get("status")
    if before == after or not isinstance(before, str) or not isinstance(after, str):
        return None
    party = TRANSITIONS.get((before, after))
    if party is None:
        return None  # not an edge at all: the write path answers 409
    is_owner = assigned_agency("Task", current) == organization
    if party == OWNER and not is_owner:
        owner = assigned_agency("Task", current) or "the agency named in Task.owner"
        return f"only the agency the referral is assigned to ({owner}) may move it from {before} to {after}"
    if party == REQUESTER and not is_requester:
        return f"only the requesting agency may move a referral from {before} to {after}"
    return None


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
