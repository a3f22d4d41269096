"""What a summary is made of before it becomes a document Bundle or a page: the child's record as the
caller may see it, and one ``Section`` per part of the summary."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from fhir_server import canonical

SECTION_SYSTEM = canonical.code_system(canonical.CS_SUMMARY_SECTION)
EMPTY_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
DAYS_PER_MONTH = 30.4375


@dataclass
class Record:
    """The child's data the caller may see, parsed, by type; referenced agencies by reference."""

    base_url: str
    patient_id: str
    patient_ids: list[str]
    patient: dict[str, Any]
    today: date
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    referenced: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Organization/x" -> resource
    raw: dict[tuple[str, str], bytes] = field(default_factory=dict)  # stored bytes, sent out as they are

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return self.by_type.get(resource_type, [])

    @property
    def birth_date(self) -> date | None:
        return parse_date(self.patient.get("birthDate"))

    @property
    def gender(self) -> str | None:
        value = self.patient.get("gender")
        return value if isinstance(value, str) else None

    def age_days(self, on: date) -> int | None:
        born = self.birth_date
        return (on - born).days if born is not None else None

    def url(self, resource: dict[str, Any]) -> str:
        return f"{self.base_url}/{resource['resourceType']}/{resource['id']}"

    def name_of(self, reference: Any) -> str:
        """A readable name for a reference: the referenced agency's name, else its display."""
        if not isinstance(reference, dict):
            return ""
        target = self.referenced.get(str(reference.get("reference", "")))
        if target is not None and isinstance(target.get("name"), str):
            return target["name"]
        return str(reference.get("display") or reference.get("reference") or "")


@dataclass
class Section:
    """One section of the summary. ``entries`` are the resources it shows: stored ones (dicts with an
    ``id``) and ones computed for this summary (with ``fullUrl`` set by ``derived``)."""

    code: str  # th-summary-section code
    kinds: tuple[tuple[str, str | None], ...]  # (resource type, profile) of the data it shows
    narrative: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    empty_reason: str | None = None  # list-empty-reason code: withheld, nilknown, notasked
    withheld_classes: tuple[str, ...] = ()
    subsections: list[Section] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)  # what the printable page draws (not in FHIR)

    @property
    def shown(self) -> bool:
        return self.empty_reason != "withheld"


@dataclass
class Summary:
    record: Record
    sections: list[Section]
    generated: datetime
    identifier: str = field(default_factory=lambda: str(uuid.uuid4()))


def derived(resource: dict[str, Any]) -> dict[str, Any]:
    """Mark a resource computed for this summary (not stored): it lives in the Bundle as urn:uuid."""
    resource.setdefault("id", str(uuid.uuid4()))
    resource["_fullUrl"] = f"urn:uuid:{resource['id']}"
    return resource


def parse_date(value: Any) -> date | None:
    """The calendar date of a FHIR date or dateTime (None when absent or partial)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def effective_date(resource: dict[str, Any]) -> date | None:
    for key in ("effectiveDateTime", "occurrenceDateTime", "authored", "authoredOn", "dateTime", "issued"):
        found = parse_date(resource.get(key))
        if found is not None:
            return found
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        return parse_date(period.get("start"))
    return None


def thai_date(value: date | None) -> str:
    """A date the way Thai forms write it: day month-abbreviation Buddhist-era year."""
    if value is None:
        return "-"
    months = ("ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค.")
    return f"{value.day} {months[value.month - 1]} {value.year + 543}"


def thai_age(days: int | None) -> str:
    if days is None or days < 0:
        return "-"
    years, rest = divmod(days, 365.25)
    months = int(rest // 30.4375)
    if years < 1:
        return f"{months} เดือน {int(rest - months * 30.4375)} วัน"
    return f"{int(years)} ปี {months} เดือน"


def profiles(resource: dict[str, Any]) -> list[str]:
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    return [p for p in claimed if isinstance(p, str)] if isinstance(claimed, list) else []
