"""Evaluating a compiled Measure on the warehouse for a period: populations, scores and strata.

One SQL statement per group computes every population of every stratum at once (GROUPING SETS), with
both the number of units and the number of distinct children in each cell (what suppression needs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_server.analytics.measures.plan import GroupPlan, MeasurePlan, child_key, stratifier_sql

RunSql = Callable[[str], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Cell:
    count: int  # units (children, referrals, requests)
    children: int  # distinct children among them
    key: int | None = None  # cell key (sum of the children's secret record keys), when asked for


@dataclass
class Stratum:
    value: str | None
    populations: dict[str, Cell]
    score: float | None


@dataclass
class GroupResult:
    plan: GroupPlan
    populations: dict[str, Cell]
    score: float | None
    strata: dict[str, list[Stratum]] = field(default_factory=dict)


@dataclass
class MeasureResult:
    plan: MeasurePlan
    start: date
    end: date
    groups: list[GroupResult]


@dataclass(frozen=True)
class Subject:
    """Which units a report covers: everything, one district, one agency's, or listed children."""

    district: str | None = None
    agency: str | None = None
    patients: tuple[str, ...] | None = None

    def sql(self, plan: MeasurePlan) -> str:
        parts = ["TRUE"]
        if self.district is not None:
            parts.append(f"c.district_code = {quote(self.district)}")
        if self.agency is not None:
            column = f"u.{plan.agency_column}" if plan.agency_column else "NULL"
            parts.append(f"{column} = {quote(self.agency)}")
        if self.patients is not None:
            listed = ", ".join(quote(p) for p in self.patients) or "NULL"
            parts.append(f"{child_key()} IN ({listed})")
        return " AND ".join(parts)


def quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _effective(populations: dict[str, str]) -> dict[str, str]:
    """Each population as counted: inside the initial population, numerator inside the denominator."""
    ip = "p_initial_population"
    out = {"initial-population": ip}
    if "denominator" in populations:
        den = f"{ip} AND p_denominator"
        if "denominator-exclusion" in populations:
            out["denominator-exclusion"] = f"{den} AND p_denominator_exclusion"
            den = f"{den} AND NOT p_denominator_exclusion"
        out["denominator"] = den
        if "numerator" in populations:
            num = f"{den} AND p_numerator"
            if "numerator-exclusion" in populations:
                out["numerator-exclusion"] = f"{num} AND p_numerator_exclusion"
                num = f"{num} AND NOT p_numerator_exclusion"
            out["numerator"] = num
    if "measure-population" in populations:
        out["measure-population"] = f"{ip} AND p_measure_population"
    return out


Period = tuple[str, date, date]  # key, first day, last day


def group_sql(
    plan: MeasurePlan,
    group: GroupPlan,
    periods: list[Period],
    subject: Subject,
    stratify: bool,
    cell_secret: str | None = None,
) -> str:
    """One statement for every period and stratum of a group (periods joined in as a small table).

    With ``cell_secret`` each cell also gets its cell key (``protect`` turns it into noise): the sum of
    its distinct children's record keys, a record key being the MD5 of the secret and the child's id."""
    columns = ["_p.key AS _period", f"{child_key()} AS _child"]
    if cell_secret is not None:
        columns.append(f"md5_number_lower({quote(cell_secret)} || {child_key()}) AS _rk")
    strata = group.stratifiers if stratify else []
    for i, name in enumerate(strata):
        columns.append(f"{stratifier_sql(name, plan)} AS _s{i}")
    for code, condition in group.populations.items():
        if code == "measure-observation":
            columns.append(f"({condition}) AS _obs")
        else:
            columns.append(f"COALESCE({condition}, FALSE) AS p_{code.replace('-', '_')}")
    counted = _effective(group.populations)
    measures = []
    for condition in counted.values():
        measures.append(f"count(*) FILTER (WHERE {condition})")
        measures.append(f"count(DISTINCT _child) FILTER (WHERE {condition})")
        if cell_secret is not None:
            measures.append(f"COALESCE(sum(DISTINCT _rk) FILTER (WHERE {condition}), 0) % {2**32}")
    if "measure-observation" in group.populations:
        aggregate = {"mean": "avg"}.get(group.aggregate, group.aggregate)
        measures.append(f"{aggregate}(_obs) FILTER (WHERE {counted['measure-population']})")
    grouping = ", ".join(f"GROUPING(_s{i})" for i in range(len(strata))) or "0"
    keys = ", ".join(f"_s{i}" for i in range(len(strata))) or "NULL"
    sets = ", ".join(["(_period)", *[f"(_period, _s{i})" for i in range(len(strata))]])
    values = ", ".join(
        f"({quote(key)}, DATE '{start.isoformat()}', DATE '{end.isoformat()}')" for key, start, end in periods
    )
    sql = (
        f"WITH t AS (SELECT {', '.join(columns)} FROM (VALUES {values}) _p(key, pstart, pend)"
        f" CROSS JOIN {plan.unit} u LEFT JOIN children c ON c.patient_id = u.patient_id"
        f" WHERE {subject.sql(plan)})"
        f" SELECT _period, [{grouping}] AS _g, [{keys}] AS _k, {', '.join(measures)} FROM t"
        f" GROUP BY GROUPING SETS ({sets})"
    )
    return sql.replace("$period_start", "_p.pstart").replace("$period_end", "_p.pend")


def score_of(scoring: str, cells: dict[str, Cell], observed: Any) -> float | None:
    """A group's or stratum's score from its cells (and, for continuous variables, the aggregate)."""
    if scoring == "proportion":
        den, num = cells.get("denominator"), cells.get("numerator")
        if den is None or num is None or den.count == 0:
            return None
        return num.count / den.count
    if scoring == "continuous-variable":
        return None if observed is None else float(observed)
    return float(cells["initial-population"].count)


def evaluate(
    run_sql: RunSql,
    plan: MeasurePlan,
    start: date,
    end: date,
    subject: Subject | None = None,
    stratify: bool = True,
    cell_secret: str | None = None,
) -> MeasureResult:
    return evaluate_periods(run_sql, plan, [("period", start, end)], subject, stratify, cell_secret)[
        "period"
    ]


def evaluate_periods(
    run_sql: RunSql,
    plan: MeasurePlan,
    periods: list[Period],
    subject: Subject | None = None,
    stratify: bool = True,
    cell_secret: str | None = None,
) -> dict[str, MeasureResult]:
    """Every period's result, each group computed in one statement for all periods (with cell keys
    when ``cell_secret`` is given)."""
    subject = subject or Subject()
    out = {key: MeasureResult(plan, start, end, []) for key, start, end in periods}
    for group in plan.groups:
        rows = run_sql(group_sql(plan, group, periods, subject, stratify, cell_secret))
        width = 2 if cell_secret is None else 3
        counted = list(_effective(group.populations))
        strata = group.stratifiers if stratify else []
        results = {key: GroupResult(group, {}, None, {name: [] for name in strata}) for key, _, _ in periods}
        for row in rows:
            result = results[row[0]]
            flags, keys = row[1], row[2]
            numbers = row[3:]
            cells = {
                code: Cell(
                    int(numbers[width * i]),
                    int(numbers[width * i + 1]),
                    None if width == 2 else int(numbers[width * i + 2]),
                )
                for i, code in enumerate(counted)
            }
            observed = numbers[width * len(counted)] if "measure-observation" in group.populations else None
            score = score_of(group.scoring, cells, observed)
            open_sets = [i for i, flag in enumerate(flags) if flag == 0] if strata else []
            if not open_sets:
                result.populations, result.score = cells, score
                continue
            index = open_sets[0]
            value = keys[index]
            result.strata[strata[index]].append(Stratum(None if value is None else str(value), cells, score))
        for key, result in results.items():
            if not result.populations:
                result.populations = {code: Cell(0, 0) for code in counted}
                result.score = score_of(group.scoring, result.populations, None)
            for items in result.strata.values():
                items.sort(key=lambda s: (s.value is None, s.value or ""))
            out[key].groups.append(result)
    return out
