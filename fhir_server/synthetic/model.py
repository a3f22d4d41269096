"""What the generator modules share about one child while building its record: ids, links, dates."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fhir_server.synthetic.agencies import Agency, LocalAgencies

DAYS_PER_MONTH = 30.4375


@dataclass(slots=True)
class Guardian:
    id: str
    relationship: str  # code (v3 RoleCode or ours)
    reference: dict[str, str]


@dataclass(slots=True)
class Child:
    """One child and the agencies that serve it; resources are built from this, never from each other."""

    rng: random.Random
    urn: bool  # references inside the household as urn:uuid (transaction bundles) or Type/id (NDJSON)
    reference_date: date
    id: str
    gender: str
    birth_date: date
    stateless: bool
    agencies: LocalAgencies
    health_centre: Agency
    childcare: Agency | None
    school: Agency | None
    birth_weight_g: int = 0
    guardians: list[Guardian] = field(default_factory=list)

    @property
    def reference(self) -> dict[str, str]:
        return reference(self.urn, "Patient", self.id)

    def age_days(self, on: date | None = None) -> int:
        return ((on or self.reference_date) - self.birth_date).days

    def at_months(self, months: float, jitter_days: int = 0) -> date:
        """The date the child reaches an age, plus up to ``jitter_days`` of delay."""
        extra = self.rng.randrange(jitter_days + 1) if jitter_days else 0
        return self.birth_date + timedelta(days=round(months * DAYS_PER_MONTH) + extra)

    def provider_at(self, on: date) -> Agency:
        """Who sees the child for routine care at a date: the school for school-age pupils."""
        if self.school is not None and (on - self.birth_date).days >= 6 * 365:
            return self.school
        return self.health_centre


def reference(urn: bool, resource_type: str, id_: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{id_}" if urn else f"{resource_type}/{id_}"}


def timestamp(rng: random.Random, day: date) -> str:
    """An office-hours dateTime in Bangkok time on a day."""
    return f"{day.isoformat()}T{rng.randint(8, 15):02d}:{rng.randrange(60):02d}:00+07:00"


def add_months(day: date, months: float) -> date:
    return day + timedelta(days=round(months * DAYS_PER_MONTH))


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return (
        {"system": system, "code": code, "display": display} if display else {"system": system, "code": code}
    )
