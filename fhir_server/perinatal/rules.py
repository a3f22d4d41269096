"""The thresholds of the risk flags, shipped as data (``data/risk-rules.json``) so the programme can change
them without a code change; read once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson

RULES_FILE = Path(__file__).resolve().parent / "data" / "risk-rules.json"


@dataclass(frozen=True)
class RiskRules:
    low_birth_weight_g: float  # a birth weight below this is low
    preterm_weeks: float  # a gestational age at birth below this is preterm
    asphyxia_apgar: float  # an Apgar score at 1 minute below this is birth asphyxia
    teenage_age: int  # a mother younger than this on the delivery day is a teenage mother
    first_anc_weeks: float  # a first antenatal visit after this gestational age is late
    recommended_anc_visits: int  # fewer recorded visits in an ended pregnancy is too few
    follow_up_for: frozenset[str]  # flags that propose a developmental follow-up referral
    follow_up_tool: str  # th-screening-tool code of that follow-up (DAIM)


@cache
def rules() -> RiskRules:
    data = orjson.loads(RULES_FILE.read_bytes())
    return RiskRules(
        low_birth_weight_g=float(data["low-birth-weight"]["below_grams"]),
        preterm_weeks=float(data["preterm"]["below_weeks"]),
        asphyxia_apgar=float(data["birth-asphyxia"]["apgar_1min_below"]),
        teenage_age=int(data["teenage-mother"]["age_below_years"]),
        first_anc_weeks=float(data["late-first-anc"]["after_weeks"]),
        recommended_anc_visits=int(data["few-anc-visits"]["recommended_visits"]),
        follow_up_for=frozenset(data["developmental-follow-up"]["for"]),
        follow_up_tool=str(data["developmental-follow-up"]["tool"]),
    )
