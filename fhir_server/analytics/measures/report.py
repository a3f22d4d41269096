"""MeasureReports from evaluated measures, with small cells suppressed for aggregate-only roles.

Suppression: a cell counting fewer than ``SMALL_CELL`` distinct children has its count withheld (the
``data-absent-reason`` extension says ``masked`` and ours says ``<5``), and a score computed from a
withheld cell is withheld too. The same rule serves the dashboard and the reports' CSV exports.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_server import canonical
from fhir_server.analytics.measures.evaluate import Cell, MeasureResult

SMALL_CELL = 5
SUPPRESSED_TEXT = f"<{SMALL_CELL}"
EXT_SUPPRESSED = canonical.structure_definition("suppressed-count")
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
_POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
_STRATIFIER_SYSTEM = canonical.code_system("th-measure-stratifier")


def suppressed(cell: Cell) -> bool:
    return cell.children < SMALL_CELL


def score_hidden(cells: dict[str, Cell], suppress: bool) -> bool:
    if not suppress:
        return False
    used = [cells[c] for c in ("numerator", "denominator", "measure-population") if c in cells] or [
        cells["initial-population"]
    ]
    return any(suppressed(c) for c in used)


def _masked() -> list[dict[str, Any]]:
    return [
        {"url": DATA_ABSENT, "valueCode": "masked"},
        {"url": EXT_SUPPRESSED, "valueString": SUPPRESSED_TEXT},
    ]


def _population(code: str, cell: Cell, suppress: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": {"coding": [{"system": _POPULATION_SYSTEM, "code": code}]}}
    if suppress and suppressed(cell):
        entry["extension"] = _masked()
    else:
        entry["count"] = cell.count
    return entry


def _score(value: float | None, hidden: bool, scoring: str) -> dict[str, Any] | None:
    if hidden:
        return {"extension": _masked()}
    if value is None:
        return None
    if scoring == "proportion":
        return {"value": round(value, 4), "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}
    if scoring == "continuous-variable":
        return {"value": round(value, 1), "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}
    return {"value": value}


def measure_report(
    result: MeasureResult,
    *,
    suppress: bool,
    report_type: str = "summary",
    subject: str | None = None,
    reporter: str | None = None,
) -> dict[str, Any]:
    plan = result.plan
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": report_type,
        "measure": f"{plan.url}|{plan.version}" if plan.version else plan.url,
    }
    if subject:
        report["subject"] = {"reference": subject}
    report["date"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if reporter:
        report["reporter"] = {"reference": reporter}
    report["period"] = {"start": result.start.isoformat(), "end": result.end.isoformat()}
    if plan.improvement:
        report["improvementNotation"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                    "code": plan.improvement,
                }
            ]
        }
    groups = []
    for group in result.groups:
        entry: dict[str, Any] = {"code": group.plan.source.get("code") or {"text": group.plan.code}}
        entry["population"] = [_population(code, cell, suppress) for code, cell in group.populations.items()]
        score = _score(group.score, score_hidden(group.populations, suppress), group.plan.scoring)
        if score is not None:
            entry["measureScore"] = score
        stratifiers = []
        for name, strata in group.strata.items():
            stratifier: dict[str, Any] = {
                "code": [{"coding": [{"system": _STRATIFIER_SYSTEM, "code": name}], "text": name}],
                "stratum": [],
            }
            for stratum in strata:
                item: dict[str, Any] = {
                    "value": {"text": stratum.value if stratum.value is not None else "unknown"}
                }
                item["population"] = [
                    _population(code, cell, suppress) for code, cell in stratum.populations.items()
                ]
                score = _score(stratum.score, score_hidden(stratum.populations, suppress), group.plan.scoring)
                if score is not None:
                    item["measureScore"] = score
                stratifier["stratum"].append(item)
            stratifiers.append(stratifier)
        if stratifiers:
            entry["stratifier"] = stratifiers
        groups.append(entry)
    report["group"] = groups
    return report
