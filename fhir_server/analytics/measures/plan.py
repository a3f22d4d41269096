"""A Measure resource compiled into SQL over the warehouse: one statement per group.

Our Measures say which flat view holds the counted units (extension ``measure-unit-view``), which of its
columns names the agency (``measure-agency-column``), and write each population's criteria in our
rule language (``text/x-termtem-rule``, see ``rules``). Stratifiers are ``district``, ``sex``,
``age-band``, ``agency`` or a column of the unit view. Children are counted once each (by
``child_key``), which is what small-cell suppression counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server import canonical
from fhir_server.analytics.measures.rules import RuleError, Schema, compile_rule, compile_value

RULE_LANGUAGE = "text/x-termtem-rule"
EXT_UNIT_VIEW = canonical.structure_definition("measure-unit-view")
EXT_AGENCY_COLUMN = canonical.structure_definition("measure-agency-column")
EXT_GROUP_SCORING = canonical.structure_definition("measure-group-scoring")
EXT_AGGREGATE = canonical.structure_definition("measure-aggregate")
EXT_TITLE_TH = canonical.structure_definition("measure-title-th")
POPULATIONS = (
    "initial-population",
    "denominator",
    "denominator-exclusion",
    "numerator",
    "numerator-exclusion",
    "measure-population",
    "measure-observation",
)
STANDARD_STRATIFIERS = ("district", "sex", "age-band", "agency")
AGE_BANDS = (
    (0, 12, "0-11m"),
    (12, 36, "1-2y"),
    (36, 72, "3-5y"),
    (72, 144, "6-11y"),
    (144, 100_000, "12-18y"),
)


class MeasureError(ValueError):
    """A Measure this server cannot evaluate; ``where`` is the element (FHIRPath)."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.message, self.where = message, where


def child_key(alias: str = "u") -> str:
    """SQL naming the child a unit belongs to (counted once per child).

    Today the Patient id; when golden records (one child, one record) land this is where the golden
    id is used instead.
    """
    return f"{alias}.patient_id"


@dataclass
class GroupPlan:
    code: str
    display: str
    scoring: str  # proportion | cohort | continuous-variable
    populations: dict[str, str]  # population code -> SQL condition (or value for measure-observation)
    stratifiers: list[str]
    aggregate: str = "median"
    descriptions: dict[str, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)


@dataclass
class MeasurePlan:
    id: str
    url: str
    version: str | None
    title: str
    title_th: str
    unit: str
    agency_column: str | None
    groups: list[GroupPlan]
    improvement: str | None
    resource: dict[str, Any]


def _extension(element: dict[str, Any], url: str) -> Any:
    for ext in element.get("extension", []) or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def _code(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding", []) or []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def compile_measure(measure: dict[str, Any], tables: dict[str, list[str]]) -> MeasurePlan:
    """Check and compile ``measure`` against the warehouse's tables (view name -> columns)."""
    unit = _extension(measure, EXT_UNIT_VIEW)
    if not isinstance(unit, str) or unit not in tables:
        raise MeasureError(f"the unit view {unit!r} is not one of {sorted(tables)}", "Measure.extension")
    if "patient_id" not in tables[unit]:
        raise MeasureError(f"the unit view {unit} has no patient_id column", "Measure.extension")
    agency = _extension(measure, EXT_AGENCY_COLUMN)
    if agency is not None and agency not in tables[unit]:
        raise MeasureError(f"{unit} has no column {agency!r} for the agency", "Measure.extension")
    schema = Schema(tables, unit)
    scoring = _code(measure.get("scoring")) or "proportion"
    groups: list[GroupPlan] = []
    for g_index, group in enumerate(measure.get("group", []) or []):
        where = f"Measure.group[{g_index}]"
        populations: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        aggregate = "median"
        for p_index, population in enumerate(group.get("population", []) or []):
            at = f"{where}.population[{p_index}]"
            code = _code(population.get("code"))
            if code not in POPULATIONS:
                raise MeasureError(f"unknown population code {code!r}", f"{at}.code")
            criteria = population.get("criteria") or {}
            if criteria.get("language") != RULE_LANGUAGE:
                raise MeasureError(
                    f"criteria must be written in {RULE_LANGUAGE} (our measure rules)",
                    f"{at}.criteria.language",
                )
            try:
                compiled = (compile_value if code == "measure-observation" else compile_rule)(
                    criteria.get("expression", ""), schema
                )
            except RuleError as exc:
                raise MeasureError(f"{code}: {exc}", f"{at}.criteria.expression") from None
            populations[code] = compiled.sql
            descriptions[code] = str(population.get("description", ""))
            if code == "measure-observation":
                aggregate = _extension(population, EXT_AGGREGATE) or "median"
                if aggregate not in ("median", "mean", "sum", "min", "max"):
                    raise MeasureError(f"unknown aggregate {aggregate!r}", f"{at}.extension")
        if "initial-population" not in populations:
            raise MeasureError("a group needs an initial-population", where)
        stratifiers = []
        for s_index, stratifier in enumerate(group.get("stratifier", []) or []):
            name = (stratifier.get("criteria") or {}).get("expression") or _code(stratifier.get("code"))
            column = str(name).replace("-", "_")
            if name not in STANDARD_STRATIFIERS and column not in tables[unit]:
                raise MeasureError(
                    f"unknown stratifier {name!r} (district, sex, age-band, agency or a column of {unit})",
                    f"{where}.stratifier[{s_index}].criteria",
                )
            stratifiers.append(str(name))
        group_scoring = _extension(group, EXT_GROUP_SCORING) or scoring
        if group_scoring == "proportion" and not {"denominator", "numerator"} <= set(populations):
            raise MeasureError("a proportion needs a denominator and a numerator", where)
        if group_scoring == "continuous-variable" and not {
            "measure-population",
            "measure-observation",
        } <= set(populations):
            raise MeasureError(
                "a continuous variable needs a measure-population and a measure-observation", where
            )
        groups.append(
            GroupPlan(
                code=_code(group.get("code")) or f"group-{g_index + 1}",
                display=(group.get("code") or {}).get("text") or _code(group.get("code")) or "",
                scoring=group_scoring,
                populations=populations,
                stratifiers=stratifiers,
                aggregate=aggregate,
                descriptions=descriptions,
                source=group,
            )
        )
    if not groups:
        raise MeasureError("a Measure needs at least one group", "Measure.group")
    return MeasurePlan(
        id=str(measure.get("id", "")),
        url=str(measure.get("url", "")),
        version=measure.get("version"),
        title=str(measure.get("title") or measure.get("name") or measure.get("id")),
        title_th=str(_extension(measure, EXT_TITLE_TH) or measure.get("title") or ""),
        unit=unit,
        agency_column=agency,
        groups=groups,
        improvement=_code(measure.get("improvementNotation")),
        resource=measure,
    )


def stratifier_sql(name: str, plan: MeasurePlan) -> str:
    if name == "district":
        return "c.district_code"
    if name == "sex":
        return "c.sex"
    if name == "agency":
        return f"u.{plan.agency_column}" if plan.agency_column else "NULL"
    if name == "age-band":
        months = "date_diff('month', c.birth_date, $period_end)"
        cases = " ".join(
            f"WHEN {months} >= {lo} AND {months} < {hi} THEN '{label}'" for lo, hi, label in AGE_BANDS
        )
        return f"CASE {cases} END"
    return f"u.{name.replace('-', '_')}"
