"""The identity and guardian sections, and the active-consent section: who the child is, who cares for
the child, and who may see what of the child's data."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import Record, Section, parse_date, thai_age, thai_date

GENDER = "http://hl7.org/fhir/administrative-gender"
ROLE_CODE = canonical.V3_ROLE_CODE_SYSTEM
GUARDIAN_SYSTEM = canonical.code_system(canonical.CS_GUARDIAN_RELATIONSHIP)
DATA_CLASS_SYSTEM = canonical.code_system(canonical.CS_DATA_CLASS)
AGENCY_TYPE_SYSTEM = canonical.code_system(canonical.CS_AGENCY_TYPE)
AGENCY_TYPE_EXT = canonical.structure_definition(canonical.EXT_CONSENT_AGENCY_TYPE)
LAWFUL_BASIS_EXT = canonical.structure_definition(canonical.EXT_LAWFUL_BASIS)
PROVISION_TYPE = "http://hl7.org/fhir/consent-provision-type"
_ID_LABELS = {
    canonical.CID_SYSTEM: "เลขประจำตัวประชาชน",
    canonical.GCODE_SYSTEM: "รหัส G (กระทรวงศึกษาธิการ)",
    canonical.PASSPORT_THA_SYSTEM: "หนังสือเดินทาง",
}
IDENTITY_KINDS = (("Patient", None),)
GUARDIAN_KINDS = (("RelatedPerson", None),)
CONSENT_KINDS = (("Consent", None),)


def human_name(names: Any) -> str:
    """The Thai (or first) name as written: its text, else prefix, given and family names."""
    if not isinstance(names, list) or not names:
        return "-"

    def language(name: dict[str, Any]) -> str | None:
        for ext in name.get("extension", []) if isinstance(name.get("extension"), list) else []:
            if isinstance(ext, dict) and ext.get("url", "").endswith("/language"):
                return str(ext.get("valueCode"))
        return None

    dicts = [n for n in names if isinstance(n, dict)]
    chosen = next((n for n in dicts if language(n) == "th"), dicts[0] if dicts else {})
    if isinstance(chosen.get("text"), str):
        return chosen["text"]
    parts = [*chosen.get("prefix", []), *chosen.get("given", []), chosen.get("family", "")]
    return " ".join(p for p in parts if isinstance(p, str) and p) or "-"


def masked(value: str) -> str:
    """An identifier with all but its last four characters hidden (a printed summary travels)."""
    return "x" * max(len(value) - 4, 0) + value[-4:]


def identity(record: Record) -> Section:
    patient = record.patient
    section = Section("identity", IDENTITY_KINDS, entries=[patient])
    gender = patient.get("gender")
    thai_gender, english_gender = terms.display(GENDER, gender) if isinstance(gender, str) else (None, None)
    ids = []
    for identifier in patient.get("identifier", []) if isinstance(patient.get("identifier"), list) else []:
        if (
            isinstance(identifier, dict)
            and identifier.get("system") in _ID_LABELS
            and identifier.get("value")
        ):
            ids.append(f"{_ID_LABELS[identifier['system']]} {masked(str(identifier['value']))}")
    born = record.birth_date
    rows: list[list[object]] = [
        ["ชื่อ", human_name(patient.get("name"))],
        ["เพศ", x.join(thai_gender or "-", x.english(english_gender))],
        ["วันเกิด", f"{thai_date(born)} (อายุ {thai_age(record.age_days(record.today))})"],
    ]
    if ids:
        rows.append(["เลขประจำตัว", ", ".join(ids)])
    section.view = {"name": human_name(patient.get("name")), "rows": rows}
    section.narrative = x.narrative_div(
        x.el("table", x.el("tbody", *(x.el("tr", x.el("th", k), x.el("td", v)) for k, v in rows)))
    )
    return section


def guardians(record: Record) -> Section:
    people = [r for r in record.of("RelatedPerson") if r.get("active") is not False]
    section = Section("guardians", GUARDIAN_KINDS, entries=people)
    if not people:
        section.empty_reason = "nilknown"
        section.narrative = x.narrative_div(x.el("p", "ไม่มีข้อมูลผู้ปกครอง", x.english("No guardian recorded")))
        return section
    rows = []
    for person in people:
        relation = person.get("relationship")
        thai, english = terms.concept_text(relation[0] if isinstance(relation, list) and relation else None)
        phones = [
            str(t.get("value"))
            for t in person.get("telecom", [])
            if isinstance(person.get("telecom"), list)
            if isinstance(t, dict) and t.get("system") == "phone" and t.get("value")
        ]
        rows.append(
            [
                human_name(person.get("name")),
                x.join(thai or "-", x.english(english)),
                ", ".join(phones) or "-",
            ]
        )
    section.view = {"rows": rows}
    section.narrative = x.narrative_div(x.table(["ชื่อ", "ความสัมพันธ์", "โทรศัพท์"], rows))
    return section


def _codes(items: Any, system: str) -> list[str]:
    out = []
    for item in items if isinstance(items, list) else []:
        for c in item.get("coding", [item]) if isinstance(item, dict) else []:
            if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str):
                out.append(c["code"])
    return out


def _provision_rows(record: Record, provision: dict[str, Any], rows: list[list[object]]) -> None:
    actors = [record.name_of(a.get("reference")) for a in provision.get("actor", []) if isinstance(a, dict)]
    for ext in provision.get("extension", []) if isinstance(provision.get("extension"), list) else []:
        if isinstance(ext, dict) and ext.get("url") == AGENCY_TYPE_EXT:
            for code in _codes([ext.get("valueCodeableConcept")], AGENCY_TYPE_SYSTEM):
                actors.append(terms.display(AGENCY_TYPE_SYSTEM, code)[0] or code)
    classes = [
        terms.display(DATA_CLASS_SYSTEM, c)[0] or c for c in _codes(provision.get("code"), DATA_CLASS_SYSTEM)
    ]
    purposes = [
        str(p.get("code")) for p in provision.get("purpose", []) if isinstance(p, dict) and p.get("code")
    ]
    if actors or classes or purposes:
        kind = provision.get("type", "permit")
        rows.append(
            [
                x.join(*(terms.display(PROVISION_TYPE, kind)[0] or kind,)),
                ", ".join(actors) or "ทุกหน่วยงาน",
                ", ".join(purposes) or "-",
                ", ".join(classes) or "ทุกประเภทข้อมูล",
            ]
        )
    for child in provision.get("provision", []) if isinstance(provision.get("provision"), list) else []:
        if isinstance(child, dict):
            _provision_rows(record, child, rows)


def consents(record: Record) -> Section:
    active = [c for c in record.of("Consent") if c.get("status") == "active"]
    section = Section("consents", CONSENT_KINDS, entries=active)
    if not active:
        section.empty_reason = "nilknown"
        section.narrative = x.narrative_div(
            x.el("p", "ไม่มีความยินยอมให้เปิดเผยข้อมูลที่มีผลอยู่", x.english("No active data-sharing consent"))
        )
        return section
    parts: list[x.Markup] = []
    for consent in active:
        provision: dict[str, Any] = consent["provision"] if isinstance(consent.get("provision"), dict) else {}
        period: dict[str, Any] = provision["period"] if isinstance(provision.get("period"), dict) else {}
        rows: list[list[object]] = []
        _provision_rows(record, provision, rows)
        parts.append(
            x.el(
                "p",
                x.el("b", f"ลงนาม {thai_date(parse_date(consent.get('dateTime')))}"),
                f" มีผล {thai_date(parse_date(period.get('start')))}",
                f" ถึง {thai_date(parse_date(period.get('end')))}",
            )
        )
        parts.append(x.table(["ข้อกำหนด", "หน่วยงาน", "วัตถุประสงค์", "ข้อมูล"], rows))
    section.narrative = x.narrative_div(*parts)
    section.view = {"count": len(active)}
    return section
