"""The wellbeing section: the latest four-dimension ("flower") assessment, one petal per dimension.

Two shapes are read: the Observations the server scores from a flower QuestionnaireResponse (one per
dimension plus the overall level, profile th-wellbeing-score) and a single TH Wellbeing Assessment
Observation with one component per dimension (as legacy case files are mapped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_server import canonical
from fhir_server.summary import terms
from fhir_server.summary import xhtml as x
from fhir_server.summary.model import Record, Section, effective_date, profiles, thai_date

ASSESSMENT = canonical.structure_definition(canonical.PROFILE_WELLBEING)
SCORE = canonical.structure_definition(canonical.PROFILE_WELLBEING_SCORE)
DIMENSION_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_DIMENSION)
LEVEL_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_LEVEL)
SCORE_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_SCORE)
LEVELS = ("good", "watch", "at-risk", "crisis")  # best to worst (the level code system's order)
WELLBEING_KINDS = (("Observation", ASSESSMENT), ("Observation", SCORE))


@dataclass
class Flower:
    on: date
    levels: dict[str, str] = field(default_factory=dict)  # dimension -> level
    overall: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)


def worst(levels: list[str]) -> str | None:
    known = [lv for lv in levels if lv in LEVELS]
    return max(known, key=LEVELS.index) if known else None


def _flowers(record: Record) -> list[Flower]:
    scored: dict[str, Flower] = {}
    out: list[Flower] = []
    for obs in record.of("Observation"):
        if obs.get("status") in ("entered-in-error", "cancelled"):
            continue
        claimed = profiles(obs)
        on = effective_date(obs) or date.min
        if SCORE in claimed:
            derived = obs.get("derivedFrom")
            key = str(derived[0].get("reference")) if isinstance(derived, list) and derived else f"{on}"
            flower = scored.setdefault(key, Flower(on))
            flower.sources.append(obs)
            level = terms.has_code(obs.get("valueCodeableConcept"), LEVEL_SYSTEM)
            dimension = terms.has_code(obs.get("code"), DIMENSION_SYSTEM)
            if dimension and level:
                flower.levels[dimension] = level
            elif terms.has_code(obs.get("code"), SCORE_SYSTEM, frozenset({"overall"})) and level:
                flower.overall = level
        elif ASSESSMENT in claimed:
            flower = Flower(on, sources=[obs])
            for component in obs.get("component", []) if isinstance(obs.get("component"), list) else []:
                if not isinstance(component, dict):
                    continue
                dimension = terms.has_code(component.get("code"), DIMENSION_SYSTEM)
                level = terms.has_code(component.get("valueCodeableConcept"), LEVEL_SYSTEM)
                if dimension and level:
                    flower.levels[dimension] = level
            flower.overall = worst(list(flower.levels.values()))
            out.append(flower)
    for flower in scored.values():
        flower.overall = flower.overall or worst(list(flower.levels.values()))
        out.append(flower)
    return sorted((f for f in out if f.levels), key=lambda f: f.on)


def _label(system: str, code: str | None) -> x.Markup:
    if code is None:
        return x.text("-")
    thai, english = terms.display(system, code)
    return x.join(thai or code, x.english(english))


def build(record: Record) -> Section:
    section = Section("wellbeing", WELLBEING_KINDS)
    flowers = _flowers(record)
    if not flowers:
        section.empty_reason = "nilknown"
        section.narrative = x.narrative_div(
            x.el("p", "ยังไม่มีการประเมินความเป็นอยู่", x.english("No wellbeing assessment recorded"))
        )
        return section
    latest = flowers[-1]
    section.entries = list(latest.sources)
    section.view = {"flower": latest, "history": flowers}
    rows = [[_label(DIMENSION_SYSTEM, d), _label(LEVEL_SYSTEM, lv)] for d, lv in latest.levels.items()]
    section.narrative = x.narrative_div(
        x.el(
            "p",
            x.el("b", "ภาพรวม: "),
            _label(LEVEL_SYSTEM, latest.overall),
            f" (ประเมินเมื่อ {thai_date(latest.on)})",
        ),
        x.table(["มิติ", "ระดับ"], rows),
    )
    return section
