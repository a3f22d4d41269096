"""Overdue referrals announced to their requester: one Communication per referral and due date.

The sweep (run by the server's background job every ``TERMTEM_OVERDUE_SWEEP`` seconds, and by
``sweep`` from tests and tools) searches ``Task?overdue=true`` across all agencies and writes, for
each overdue Task that has not been announced for its current due date, a Communication:

- category ``th-workflow#overdue-notice``, ``about`` the Task, ``subject`` the child, ``recipient``
  the requester (the agency that sent the referral), ``sender`` the agency it was assigned to;
- identifier ``overdue-notice|<task id>/<due date>``: a moved due date is announced again, the same
  one never twice (the search for the identifier and the write are in one transaction);
- the requester's writing tag, so the requester reads it as its own; an agency subscribed to
  ``Communication?recipient=Organization/ID`` is notified like for any other resource.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.search import registry
from fhir_server.search.query import parse_search
from fhir_server.security.access import OWNER_TAG_SYSTEM
from fhir_server.workflow import deadlines
from fhir_server.workflow.referrals import CHANGED_BY, set_tag

log = logging.getLogger("termtem.workflow")

WORKFLOW = canonical.code_system(canonical.CS_WORKFLOW)
_PAGE = 500


def _query(resource_type: str, params: list[tuple[str, str]]) -> Any:
    return parse_search(resource_type, params, base_url="", strict=True, default_count=_PAGE, max_count=_PAGE)


def _waiting_for_reindex() -> bool:
    """True while the ``due-date`` parameter the sweep searches on is not yet usable (a store that
    held Tasks before the parameter shipped is still being reindexed)."""
    param = registry.get("Task", "due-date")
    return param is None or registry.is_pending(param)


def notice_key(task_id: str, due: str) -> str:
    return f"{task_id}/{due}"


def _organization(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    kept = {k: v for k, v in value.items() if k in ("reference", "identifier", "display")}
    return kept or None


def notice(task_id: str, task: dict[str, Any], due: str, now: datetime) -> dict[str, Any]:
    """The Communication announcing that ``task`` passed ``due``."""
    owner = _organization(task.get("owner"))
    requester = _organization(task.get("requester"))
    whom = (owner or {}).get("display") or (owner or {}).get("reference") or "the receiving agency"
    text = (
        f"การส่งต่อเลยกำหนด {due} (สถานะ {task.get('status')}) ที่ {whom} / "
        f"Referral Task/{task_id} passed its due date {due} (status {task.get('status')}) at {whom}"
    )
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "identifier": [{"system": canonical.OVERDUE_NOTICE_SYSTEM, "value": notice_key(task_id, due)}],
        "status": "completed",
        "category": [
            {"coding": [{"system": WORKFLOW, "code": "overdue-notice", "display": "การส่งต่อเลยกำหนด"}]}
        ],
        "priority": task.get("priority") if task.get("priority") in deadlines.PRIORITIES else "routine",
        "about": [{"reference": f"Task/{task_id}"}],
        "sent": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "payload": [{"contentString": text}],
    }
    if isinstance(task.get("for"), dict):
        resource["subject"] = task["for"]
    if requester is not None:
        resource["recipient"] = [requester]
    if owner is not None:
        resource["sender"] = owner
    set_tag(resource, CHANGED_BY, "server", "overdue sweep")
    reference = requester.get("reference") if requester else None
    if isinstance(reference, str) and reference.startswith("Organization/"):
        set_tag(resource, OWNER_TAG_SYSTEM, reference)
    return resource


async def sweep(store: Any, now: datetime | None = None) -> list[str]:
    """Announce every overdue referral not yet announced for its due date; the Communications written
    (``Communication/id``)."""
    from fhir_server.interactions import writes

    if _waiting_for_reindex():
        log.info("overdue sweep skipped: Task due-date is still being reindexed")
        return []
    moment = now or datetime.now(UTC)
    written: list[str] = []
    cursor: str | None = None
    while True:
        params = [("overdue", "true")] + ([("_cursor", cursor)] if cursor is not None else [])
        page = await store.search(_query("Task", params))
        for match in page.matches:
            task = orjson.loads(match.body)
            due = deadlines.due_of(task)
            if due is None or not deadlines.is_overdue(task, moment):
                continue
            async with store.transaction() as tx:
                found = await tx.search(
                    _query(
                        "Communication",
                        [("identifier", f"{canonical.OVERDUE_NOTICE_SYSTEM}|{notice_key(match.id, due)}")],
                    )
                )
                if found.matches:
                    continue
                resource = notice(match.id, task, due, moment)
                new_id = writes.new_id()
                await writes.write_version(
                    tx, "Communication", new_id, resource, None, current=None, method="POST"
                )
            written.append(f"Communication/{new_id}")
            log.info("Task/%s is overdue (due %s): Communication/%s to its requester", match.id, due, new_id)
        cursor = page.next_cursor
        if cursor is None:
            return written
