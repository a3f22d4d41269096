"""The referral lifecycle as the write path applies it, for every writer (HTTP, bundles, importers).

- A Task's status moves only along the graph in ``security/referrals.py`` (409 otherwise), with what
  each status needs (422: a reason to reject or fail, an output to complete).
- A Task put on hold remembers the status it left (server tag ``held-from``) and resumes there.
- Every version of a referral Task or ServiceRequest written by an agency carries the server tag
  ``changed-by`` (code: the agency, display: its client), so the Task's history shows who moved it.
- A referral Task without a due date gets one from the service-level table (``deadlines``).
- When a Task ends, the ServiceRequest it fulfils is kept in step, whoever moved the Task: completed
  when a Task based on it completed, revoked when every one ended otherwise (the server writes the
  requester's ServiceRequest; the change is named in the request's audit).
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server import canonical, fhirjson
from fhir_server.interactions.errors import FhirError
from fhir_server.security import referrals as rules
from fhir_server.storage.base import StoredResource, StoreTransaction
from fhir_server.workflow import deadlines

CHANGED_BY = canonical.tag_system(canonical.TAG_CHANGED_BY)
HELD_FROM = canonical.tag_system(canonical.TAG_HELD_FROM)
_ENDED = ("completed", "cancelled", "rejected", "failed")
_REQUEST_OPEN = ("draft", "active", "on-hold")


def _tags(resource: dict[str, Any]) -> list[dict[str, Any]]:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return [t for t in tags if isinstance(t, dict)] if isinstance(tags, list) else []


def tag_code(resource: dict[str, Any], system: str) -> str | None:
    for tag in _tags(resource):
        if tag.get("system") == system and isinstance(tag.get("code"), str):
            return str(tag["code"])
    return None


def set_tag(resource: dict[str, Any], system: str, code: str | None, display: str | None = None) -> None:
    """Replace the tags of ``system`` with one (or none when ``code`` is None)."""
    meta = dict(resource["meta"]) if isinstance(resource.get("meta"), dict) else {}
    tags = [t for t in _tags(resource) if t.get("system") != system]
    if code is not None:
        tag = {"system": system, "code": code}
        if display:
            tag["display"] = display
        tags.append(tag)
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)
    if meta:
        resource["meta"] = meta
    else:
        resource.pop("meta", None)


def mark_changed_by(tx: Any, resource: dict[str, Any], via: str | None = None) -> None:
    """Name the agency whose request wrote this version (nothing with auth off: nobody is known)."""
    principal = getattr(tx, "principal", None)
    if principal is None:
        set_tag(resource, CHANGED_BY, None)
        return
    display = principal.client_id + (f" (through {via})" if via else "")
    set_tag(resource, CHANGED_BY, principal.organization, display)


def _reference_id(value: Any, resource_type: str) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    if isinstance(reference, str) and reference.startswith(f"{resource_type}/"):
        rest = reference[len(resource_type) + 1 :].split("/", 1)[0]
        return rest or None
    return None


def based_on_requests(task: dict[str, Any]) -> list[str]:
    based = task.get("basedOn")
    ids = [_reference_id(item, "ServiceRequest") for item in (based if isinstance(based, list) else [])]
    return [i for i in dict.fromkeys(ids) if i]


async def prepare_task(
    tx: StoreTransaction, task: dict[str, Any], current: StoredResource | None
) -> set[str]:
    """Check the status change and set what the server keeps; returns the top-level members changed."""
    previous = orjson.loads(current.body) if current is not None and not current.deleted else None
    before = previous.get("status") if previous else None
    after = task.get("status")
    if not isinstance(after, str):
        return set()
    held = tag_code(previous, HELD_FROM) if previous else None
    principal = getattr(tx, "principal", None)
    by_agency = principal is not None and not principal.role.unrestricted
    problem = rules.transition_problem(
        before if isinstance(before, str) else None, after, task, held_from=held, new_by_agency=by_agency
    )
    if problem is not None:
        raise FhirError(
            problem.status, problem.message, code="business-rule", expression=[problem.expression]
        )
    if after == "on-hold":
        set_tag(task, HELD_FROM, held if before == "on-hold" else before)
    else:
        set_tag(task, HELD_FROM, None)
    mark_changed_by(tx, task)
    changed: set[str] = set()
    if "owner" in task and after in ("draft", *rules.OPEN_STATUSES) and deadlines.due_of(task) is None:
        request = None
        for request_id in based_on_requests(task)[:1]:
            stored = await tx.read("ServiceRequest", request_id)
            if stored is not None and not stored.deleted:
                request = orjson.loads(stored.body)
        if is_referral(task, request) and deadlines.set_default_due(task, request):
            changed.add("restriction")
    return changed


def _claims(resource: dict[str, Any] | None, profile: str) -> bool:
    meta = resource.get("meta") if resource else None
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return isinstance(profiles, list) and canonical.structure_definition(profile) in profiles


def is_referral(task: dict[str, Any], request: dict[str, Any] | None) -> bool:
    """A Task that is a Thai referral (it claims the TH Referral Task profile, or fulfils a TH Referral):
    the ones the service levels give a due date."""
    return _claims(task, canonical.PROFILE_REFERRAL_TASK) or _claims(request, canonical.PROFILE_REFERRAL)


async def after_task_write(
    tx: StoreTransaction, stored: StoredResource, current: StoredResource | None
) -> None:
    """Audit the transition and keep the ServiceRequests the Task fulfils in step."""
    task = orjson.loads(stored.body)
    previous = orjson.loads(current.body) if current is not None and not current.deleted else None
    before = previous.get("status") if previous else None
    after = task.get("status")
    if before == after:
        return
    note = getattr(tx, "note", None)
    if note is not None:
        note(f"Task/{stored.id}: {before or 'new'} -> {after}")
    if after not in _ENDED and after != "entered-in-error":
        return
    for request_id in based_on_requests(task):
        await _keep_request_in_step(tx, request_id, f"Task/{stored.id}")


async def _keep_request_in_step(tx: StoreTransaction, request_id: str, via: str) -> None:
    from fhir_server.interactions import writes

    server = tx.as_server() if hasattr(tx, "as_server") else tx
    current = await server.read("ServiceRequest", request_id)
    if current is None or current.deleted:
        return
    request = orjson.loads(current.body)
    if request.get("status") not in _REQUEST_OPEN:
        return
    target = await _request_status(server, request_id)
    if target is None or target == request.get("status"):
        return
    before = request.get("status")
    request["status"] = target
    mark_changed_by(tx, request, via)
    body = fhirjson.replace_member(current.body, "status", target)
    await writes.write_version(
        server, "ServiceRequest", request_id, request, body, current=current, method="PUT"
    )
    note = getattr(tx, "note", None)
    if note is not None:
        note(f"ServiceRequest/{request_id}: {before} -> {target} (kept in step with {via})")


async def _request_status(tx: Any, request_id: str) -> str | None:
    """completed when a Task fulfilling the request completed and none is open; revoked when all ended
    otherwise; None while one is open (or none counts)."""
    from fhir_server.search.query import parse_search

    query = parse_search(
        "Task",
        [("based-on", f"ServiceRequest/{request_id}"), ("_count", "1000")],
        base_url="",
        strict=False,
        default_count=1000,
        max_count=1000,
    )
    page = await tx.search(query)
    statuses = [orjson.loads(m.body).get("status") for m in page.matches]
    statuses = [s for s in statuses if s != "entered-in-error"]
    if not statuses or any(s not in _ENDED for s in statuses):
        return None
    return "completed" if "completed" in statuses else "revoked"
