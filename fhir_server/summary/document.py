"""The summary as a FHIR document: consent decides each section, then a Composition and its Bundle.

A section is shown only when the caller's access (``fhir_server.security``: scopes, role, the child's
active consents, emergency access) lets it see *every* resource of the kinds the section holds, as if
another agency had written them: so a shown section is complete, and a section the caller may see only
in part (say its own agency's records) is left out with ``emptyReason = withheld``, never partly
filled. The identity section is the Patient the caller could already read, or there is no summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import not_found
from fhir_server.security import access as acc
from fhir_server.summary import (
    birth,
    development,
    gather,
    growth,
    immunization,
    people,
    record,
    referrals,
    wellbeing,
)
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import EMPTY_REASON_SYSTEM, SECTION_SYSTEM, Record, Section, Summary, thai_date
from fhir_server.summary.terms import display

SUMMARY_ID_SYSTEM = f"{canonical.BASE}/id/child-summary"
_LINK_FIELD = {
    "Observation": "subject",
    "Encounter": "subject",
    "Immunization": "patient",
    "ServiceRequest": "subject",
    "Task": "for",
    "RelatedPerson": "patient",
    "Consent": "patient",
    "QuestionnaireResponse": "subject",
}
_EMPTY_TEXT = {
    "withheld": ("ไม่แสดงตามความยินยอม", "Withheld"),
    "nilknown": ("ไม่มีข้อมูล", "None known"),
    "unavailable": ("ข้อมูลไม่พอ", "Unavailable"),
}
Builder = Callable[[Record], Section]
# (section, kinds of data it shows, builder); guardians is a sub-section of identity.
SECTIONS: list[tuple[str, tuple[tuple[str, str | None], ...], Builder]] = [
    ("birth", birth.BIRTH_KINDS, birth.build),
    ("growth", growth.GROWTH_KINDS, growth.build),
    ("development", development.DEVELOPMENT_KINDS, development.build),
    ("immunization", immunization.IMMUNIZATION_KINDS, immunization.build),
    ("referrals", referrals.REFERRAL_KINDS, referrals.build),
    ("wellbeing", wellbeing.WELLBEING_KINDS, wellbeing.build),
    ("consents", people.CONSENT_KINDS, people.consents),
]


def _probe(resource_type: str, profile: str | None, patient_id: str) -> bytes:
    body: dict[str, Any] = {"resourceType": resource_type}
    if profile:
        body["meta"] = {"profile": [profile]}
    body[_LINK_FIELD[resource_type]] = {"reference": f"Patient/{patient_id}"}
    return orjson.dumps(body)


def withheld_classes(
    ctx: RequestContext, kinds: tuple[tuple[str, str | None], ...], patient_ids: list[str]
) -> tuple[str, ...]:
    """The data classes of ``kinds`` the caller may not see in full for these children (empty: shown)."""
    guard = ctx.extras.get("guard")
    access = guard.access if guard is not None else None
    out: list[str] = []
    for rtype, profile in kinds:
        if any(not acc.visible(access, rtype, _probe(rtype, profile, pid)) for pid in patient_ids):
            out.append(acc.data_class(rtype, [profile] if profile else []))
    return tuple(dict.fromkeys(out))


def _withheld(code: str, kinds: tuple[tuple[str, str | None], ...], classes: tuple[str, ...]) -> Section:
    names = [display(canonical.code_system(canonical.CS_DATA_CLASS), c) for c in classes]
    return Section(
        code,
        kinds,
        empty_reason="withheld",
        withheld_classes=classes,
        narrative=x.narrative_div(
            x.el(
                "p",
                "ไม่แสดง: ไม่มีความยินยอมที่ให้หน่วยงานของท่านเห็นข้อมูลประเภท ",
                ", ".join(th or c for (th, _), c in zip(names, classes, strict=True)),
                x.english(
                    "withheld: no data-sharing consent lets your agency see "
                    + ", ".join(en or c for (_, en), c in zip(names, classes, strict=True))
                ),
            )
        ),
    )


async def build_summary(ctx: RequestContext, patient_id: str, *, today: date | None = None) -> Summary:
    """The child's summary as the caller may see it; 404 (or 403 where configured) for an unknown,
    deleted or hidden child, exactly like a read of a Patient that does not exist."""
    stored = await ctx.store.read("Patient", patient_id)  # the guard answers hidden as unknown
    if stored is None or stored.deleted:
        raise not_found(f"Patient/{patient_id} is not known")
    patient_ids = await record.child_patient_ids(ctx, patient_id)
    decided: list[tuple[str, tuple[tuple[str, str | None], ...], Builder, tuple[str, ...]]] = []
    types = {"Patient"}
    for code, kinds, builder in [("guardians", people.GUARDIAN_KINDS, people.guardians), *SECTIONS]:
        classes = withheld_classes(ctx, kinds, patient_ids)
        decided.append((code, kinds, builder, classes))
        if not classes:
            types.update(rtype for rtype, _ in kinds)
    found = await gather.gather(ctx, stored, patient_ids, tuple(sorted(types)), today or date.today())
    sections: dict[str, Section] = {}
    for code, kinds, builder, classes in decided:
        sections[code] = _withheld(code, kinds, classes) if classes else builder(found)
    identity = people.identity(found)
    identity.subsections.append(sections.pop("guardians"))
    summary = Summary(found, [identity, *sections.values()], datetime.now(UTC))
    audit = ctx.extras.get("audit")
    if audit is not None:
        shown = [s.code for s in _all(summary.sections) if s.shown]
        hidden = [s.code for s in _all(summary.sections) if not s.shown]
        audit.description = f"child summary: shown {', '.join(shown)}; withheld {', '.join(hidden) or 'none'}"
    return summary


def _all(sections: list[Section]) -> list[Section]:
    return [s for section in sections for s in (section, *_all(section.subsections))]


# --- the document Bundle ----------------------------------------------------------------------------


def _full_url(rec: Record, resource: dict[str, Any]) -> str:
    return str(resource.get("_fullUrl") or rec.url(resource))


def _section_json(rec: Record, section: Section) -> dict[str, Any]:
    thai, english = display(SECTION_SYSTEM, section.code)
    out: dict[str, Any] = {
        "title": f"{thai} ({english})" if english else thai or section.code,
        "code": {"coding": [{"system": SECTION_SYSTEM, "code": section.code, "display": thai}]},
        "text": {"status": "generated", "div": section.narrative},
    }
    if section.empty_reason:
        out["emptyReason"] = {
            "coding": [{"system": EMPTY_REASON_SYSTEM, "code": section.empty_reason}],
            "text": _EMPTY_TEXT.get(section.empty_reason, ("", ""))[0] or section.empty_reason,
        }
    elif section.entries:
        out["entry"] = [{"reference": _full_url(rec, e)} for e in section.entries]
    if section.subsections:
        out["section"] = [_section_json(rec, s) for s in section.subsections]
    return out


_REFERENCE = re.compile(rb'"reference"\s*:\s*"([^"]+)"')


def _references(rec: Record, entries: dict[str, Any]) -> set[str]:
    """The references the document's stored entries make (read from their bytes: one regex pass)."""
    found: set[str] = set()
    for resource in entries.values():
        raw = rec.raw.get((resource.get("resourceType"), resource.get("id")))
        if raw is not None:
            found.update(m.decode() for m in _REFERENCE.findall(raw))
    return found


def _composition_text(summary: Summary) -> str:
    rec = summary.record
    rows = []
    for section in _all(summary.sections):
        thai, english = display(SECTION_SYSTEM, section.code)
        state = _EMPTY_TEXT[section.empty_reason][0] if section.empty_reason else "แสดง"
        rows.append([x.join(thai or section.code, x.english(english)), state])
    return x.narrative_div(
        x.el(
            "p",
            x.el("b", "สรุปข้อมูลเด็ก: "),
            people.human_name(rec.patient.get("name")),
            f" ณ วันที่ {thai_date(rec.today)}",
            x.english("Child summary"),
        ),
        x.table(["หัวข้อ", "สถานะ"], rows),
    )


def to_bundle(summary: Summary) -> dict[str, Any]:
    """The R4 ``document`` Bundle: Composition first, then every resource it (or an entry) refers to."""
    rec = summary.record
    instant = summary.generated.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    composition_id = summary.identifier
    composition = {
        "resourceType": "Composition",
        "id": composition_id,
        "text": {"status": "generated", "div": _composition_text(summary)},
        "status": "final",
        "type": {
            "coding": [
                {"system": canonical.LOINC_SYSTEM, "code": "60591-5", "display": "Patient summary Document"}
            ]
        },
        "subject": {"reference": rec.url(rec.patient)},
        "date": instant,
        "author": [{"display": "Termtem FHIR server (computed child summary)"}],
        "title": "สรุปข้อมูลเด็ก (Child summary)",
        "confidentiality": "R",
        "section": [_section_json(rec, s) for s in summary.sections],
    }
    entries: dict[str, Any] = {f"urn:uuid:{composition_id}": composition}
    shown = [
        r
        for s in _all(summary.sections)
        if not s.empty_reason or s.empty_reason == "nilknown"
        for r in s.entries
    ]
    for resource in [rec.patient, *shown]:
        entries.setdefault(_full_url(rec, resource), resource)
    pending = sorted(_references(rec, entries))
    while pending:  # and what those refer to (an agency's parent organisation), so all resolve inside
        ref = pending.pop(0)
        url = f"{rec.base_url}/{ref}"
        if ref in rec.referenced and url not in entries:
            entries[url] = rec.referenced[ref]
            pending.extend(sorted(_references(rec, {url: rec.referenced[ref]})))
    out = []
    for full_url, resource in entries.items():
        raw = rec.raw.get((resource.get("resourceType"), resource.get("id")))
        if raw is not None and not full_url.startswith("urn:"):
            body: Any = orjson.Fragment(raw)
        else:
            body = {k: v for k, v in resource.items() if k != "_fullUrl"}
        out.append({"fullUrl": full_url, "resource": body})
    return {
        "resourceType": "Bundle",
        "id": composition_id,
        "meta": {"lastUpdated": instant},
        "identifier": {"system": SUMMARY_ID_SYSTEM, "value": f"urn:uuid:{composition_id}"},
        "type": "document",
        "timestamp": instant,
        "entry": out,
    }
