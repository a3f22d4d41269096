"""The referral section: open referrals and those closed recently, each with its Task's status."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import Record, Section, parse_date, thai_date

TASK_STATUS = "http://hl7.org/fhir/task-status"
REQUEST_STATUS = "http://hl7.org/fhir/request-status"
PRIORITY = "http://hl7.org/fhir/request-priority"
CATEGORY_SYSTEM = canonical.code_system(canonical.CS_REFERRAL_CATEGORY)
REASON_SYSTEM = canonical.code_system(canonical.CS_REFERRAL_REASON)
OPEN_TASK = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"})
OPEN_REQUEST = frozenset({"draft", "active", "on-hold"})
RECENT_DAYS = 365
REFERRAL_KINDS = (("ServiceRequest", None), ("Task", None))


def _local_id(reference: Any, resource_type: str) -> str | None:
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(ref, str) and f"{resource_type}/" in ref:
        return ref.rsplit(f"{resource_type}/", 1)[1].split("/_history")[0]
    return None


def _label(system: str, code: Any) -> x.Markup:
    if not isinstance(code, str):
        return x.text("-")
    thai, english = terms.display(system, code)
    return x.join(thai or code, x.english(english if english != thai else None))


def _concept(concepts: Any) -> x.Markup:
    first = concepts[0] if isinstance(concepts, list) and concepts else None
    thai, english = terms.concept_text(first)
    return x.join(thai or "-", x.english(english))


def _last_change(request: dict[str, Any], task: dict[str, Any] | None) -> date | None:
    return parse_date((task or {}).get("lastModified")) or parse_date(request.get("authoredOn"))


def referrals(record: Record) -> list[tuple[dict[str, Any], dict[str, Any] | None, bool]]:
    """(ServiceRequest, its latest Task or None, open?) for open and recently closed referrals."""
    tasks: dict[str, dict[str, Any]] = {}
    for candidate in record.of("Task"):
        for ref in [*(candidate.get("basedOn") or []), candidate.get("focus")]:
            rid = _local_id(ref, "ServiceRequest")
            if rid and (
                rid not in tasks
                or str(candidate.get("lastModified", "")) > str(tasks[rid].get("lastModified", ""))
            ):
                tasks[rid] = candidate
    out: list[tuple[dict[str, Any], dict[str, Any] | None, bool]] = []
    horizon = record.today - timedelta(days=RECENT_DAYS)
    for request in record.of("ServiceRequest"):
        if request.get("status") == "entered-in-error":
            continue
        task = tasks.get(str(request.get("id")))
        is_open = task.get("status") in OPEN_TASK if task else request.get("status") in OPEN_REQUEST
        changed = _last_change(request, task)
        if is_open or (changed is not None and changed >= horizon):
            out.append((request, task, is_open))
    out.sort(key=lambda item: (not item[2], str(item[0].get("authoredOn", ""))), reverse=False)
    return out


def _due(request: dict[str, Any], task: dict[str, Any] | None) -> date | None:
    restriction = (task or {}).get("restriction")
    period = restriction.get("period") if isinstance(restriction, dict) else None
    if isinstance(period, dict) and parse_date(period.get("end")):
        return parse_date(period.get("end"))
    occurrence = request.get("occurrencePeriod")
    return parse_date(occurrence.get("end")) if isinstance(occurrence, dict) else None


def build(record: Record) -> Section:
    section = Section("referrals", REFERRAL_KINDS)
    found = referrals(record)
    section.entries = [r for request, task, _ in found for r in (request, task) if r is not None]
    if not found:
        section.empty_reason = "nilknown"
        section.narrative = x.narrative_div(
            x.el("p", "ไม่มีการส่งต่อที่ยังเปิดอยู่หรือเพิ่งปิดในหนึ่งปี", x.english("No open or recent referrals"))
        )
        return section
    rows = []
    view = []
    for request, task, is_open in found:
        due = _due(request, task)
        late = is_open and due is not None and due < record.today
        status = (
            _label(TASK_STATUS, task.get("status")) if task else _label(REQUEST_STATUS, request.get("status"))
        )
        business = task.get("businessStatus") if task else None
        detail = terms.concept_text(business)[0] if business else ""
        performers: list[Any] = request["performer"] if isinstance(request.get("performer"), list) else []
        rows.append(
            [
                thai_date(parse_date(request.get("authoredOn"))),
                _concept(request.get("category")),
                _concept(request.get("reasonCode")),
                record.name_of(request.get("requester")),
                ", ".join(record.name_of(p) for p in performers) or "-",
                x.join(status, f" - {detail}" if detail else "", x.el("b", " (เลยกำหนด)") if late else ""),
                thai_date(due),
            ]
        )
        view.append({"request": request, "task": task, "open": is_open, "late": late, "due": due})
    open_count = sum(1 for _, _, o in found if o)
    section.view = {"referrals": view}
    section.narrative = x.narrative_div(
        x.el(
            "p",
            f"เปิดอยู่ {open_count} รายการ, ปิดแล้วในหนึ่งปี {len(found) - open_count} รายการ",
            x.english(f"{open_count} open, {len(found) - open_count} closed in the last year"),
        ),
        x.table(["วันที่ส่ง", "ประเภท", "เหตุผล", "ผู้ส่ง", "ผู้รับ", "สถานะ", "กำหนด"], rows),
    )
    return section
