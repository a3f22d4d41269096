"""The development section: the latest DSPM/DAIM result per domain, suspected delays and their follow-up.

Follow-up is read from the screenings themselves (a suspected delay is promoted at home for a month
and re-screened; a refer result needs a TEDA4I assessment): referral status belongs to the referral
section, which consent decides on its own.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import Record, Section, effective_date, profiles, thai_date

PROFILE = canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING)
TOOL_SYSTEM = canonical.code_system(canonical.CS_SCREENING_TOOL)
RESULT_SYSTEM = canonical.code_system(canonical.CS_DSPM_RESULT)
DOMAIN_SYSTEM = canonical.code_system(canonical.CS_DSPM_DOMAIN)
AGE_BAND_EXT = canonical.structure_definition(canonical.EXT_DSPM_AGE_BAND)
DOMAINS = ("GM", "FM", "RL", "EL", "PS")
CONCERNS = ("suspected-delay", "suspected-delay-refer", "delay")
RESCREEN_DAYS = 30
DEVELOPMENT_KINDS = (("Observation", PROFILE),)


def _is_screening(resource: dict[str, Any]) -> bool:
    return PROFILE in profiles(resource) or terms.has_code(resource.get("code"), TOOL_SYSTEM) is not None


def _result(concept: Any) -> str | None:
    return terms.has_code(concept, RESULT_SYSTEM)


def _band(resource: dict[str, Any]) -> str | None:
    for ext in resource.get("extension", []) if isinstance(resource.get("extension"), list) else []:
        if (
            isinstance(ext, dict)
            and ext.get("url") == AGE_BAND_EXT
            and isinstance(ext.get("valueCoding"), dict)
        ):
            return str(ext["valueCoding"].get("code"))
    return None


def _label(system: str, code: str | None) -> x.Markup:
    if code is None:
        return x.text("-")
    thai, english = terms.display(system, code)
    return x.join(thai or code, x.english(english))


def follow_up(concern: dict[str, Any], later: list[dict[str, Any]], today: date) -> tuple[str, x.Markup]:
    """(state, text) of what happened after a screening with a concern: done, due, overdue or refer."""
    on = effective_date(concern) or today
    result = _result(concern.get("valueCodeableConcept"))
    after = [s for s in later if (effective_date(s) or on) > on]
    if after:
        first = after[0]
        return "done", x.join(
            f"ประเมินซ้ำ {thai_date(effective_date(first))}: ",
            _label(RESULT_SYSTEM, _result(first.get("valueCodeableConcept"))),
        )
    if result == "suspected-delay":
        due = on + timedelta(days=RESCREEN_DAYS)
        if due < today:
            return "overdue", x.join(
                f"ยังไม่ได้ประเมินซ้ำ (ครบกำหนด {thai_date(due)})", x.english("re-screen overdue")
            )
        return "due", x.join(f"ประเมินซ้ำภายใน {thai_date(due)}", x.english("re-screen due"))
    return "refer", x.join("ส่งต่อเพื่อประเมินด้วย TEDA4I", x.english("refer for a TEDA4I assessment"))


def build(record: Record) -> Section:
    section = Section("development", DEVELOPMENT_KINDS)
    screenings = sorted(
        (
            r
            for r in record.of("Observation")
            if _is_screening(r) and r.get("status") not in ("entered-in-error", "cancelled")
        ),
        key=lambda r: (effective_date(r) or date.min, str(r.get("id"))),
    )
    section.entries = list(screenings)
    if not screenings:
        section.empty_reason = "nilknown"
        section.narrative = x.narrative_div(
            x.el("p", "ไม่มีผลการคัดกรองพัฒนาการ", x.english("No developmental screening recorded"))
        )
        return section
    per_domain: dict[str, tuple[str | None, date | None]] = {}
    for screening in screenings:
        for component in (
            screening.get("component", []) if isinstance(screening.get("component"), list) else []
        ):
            domain = (
                terms.has_code(component.get("code"), DOMAIN_SYSTEM) if isinstance(component, dict) else None
            )
            if domain:
                per_domain[domain] = (
                    _result(component.get("valueCodeableConcept")),
                    effective_date(screening),
                )
    concerns = []
    for i, screening in enumerate(screenings):
        if _result(screening.get("valueCodeableConcept")) in CONCERNS:
            state, text = follow_up(screening, screenings[i + 1 :], record.today)
            concerns.append((screening, state, text))
    latest = screenings[-1]
    section.view = {"per_domain": per_domain, "concerns": concerns, "latest": latest}
    tool = terms.has_code(latest.get("code"), TOOL_SYSTEM)
    parts = [
        x.el(
            "p",
            x.el("b", "ผลล่าสุด: "),
            _label(RESULT_SYSTEM, _result(latest.get("valueCodeableConcept"))),
            f" ({tool or 'DSPM'} ช่วงอายุ {_band(latest) or '-'} เดือน, {thai_date(effective_date(latest))})",
        ),
        x.table(
            ["ด้าน", "ผลล่าสุด", "วันที่"],
            [
                [
                    _label(DOMAIN_SYSTEM, d),
                    _label(RESULT_SYSTEM, per_domain[d][0]) if d in per_domain else "-",
                    thai_date(per_domain[d][1]) if d in per_domain else "-",
                ]
                for d in DOMAINS
            ],
        ),
    ]
    if concerns:
        parts.append(x.el("h3", "สงสัยล่าช้าและการติดตาม", x.english("Suspected delays and follow-up")))
        parts.append(
            x.table(
                ["วันที่", "ผล", "การติดตาม"],
                [
                    [
                        thai_date(effective_date(s)),
                        _label(RESULT_SYSTEM, _result(s.get("valueCodeableConcept"))),
                        text,
                    ]
                    for s, _, text in concerns
                ],
            )
        )
    section.narrative = x.narrative_div(*parts)
    return section
