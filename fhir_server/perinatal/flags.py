"""The risk flags as pure functions of the records they rest on (no storage here, so they are easy to test
and the generator, the hooks and the summary agree).

A flag holds or not; each comes with the day it refers to and the records it was derived from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir_server.perinatal import model
from fhir_server.perinatal.rules import rules


@dataclass(frozen=True)
class Flag:
    code: str  # th-perinatal-risk
    on: str | None  # the FHIR date(Time) the flag refers to (birth, delivery, first visit)
    derived_from: tuple[str, ...]  # "Type/id" of the records it rests on
    reason: str  # what was found, for the Observation's note (English; codes carry the Thai text)


def newborn_flag(observation: dict[str, Any], source: str) -> tuple[str, Flag | None] | None:
    """(flag code, the flag or None when it does not hold) for a newborn birth observation
    (``source`` is its "Observation/id"); None when the observation is no such measurement."""
    which = model.newborn_measure(observation)
    if which is None:
        return None
    limits = rules()
    when = observation.get("effectiveDateTime")
    value = observation.get("valueQuantity", observation.get("valueInteger"))
    usable = model.is_active(observation) and observation.get("status") != "registered"
    if which == model.BIRTH_WEIGHT:
        grams = model.grams(value) if usable else None
        if grams is not None and 0 < grams < limits.low_birth_weight_g:
            reason = f"birth weight {grams:g} g, under {limits.low_birth_weight_g:g} g"
            return "low-birth-weight", Flag("low-birth-weight", when, (source,), reason)
        return "low-birth-weight", None
    if which == model.GESTATIONAL_AGE_AT_BIRTH:
        weeks = model.weeks(value) if usable else None
        if weeks is not None and 0 < weeks < limits.preterm_weeks:
            reason = f"born at {weeks:g} weeks, before {limits.preterm_weeks:g} weeks"
            return "preterm", Flag("preterm", when, (source,), reason)
        return "preterm", None
    apgar = model.score(value) if usable else None
    if apgar is not None and 0 <= apgar < limits.asphyxia_apgar:
        reason = f"Apgar {apgar:g} at 1 minute, under {limits.asphyxia_apgar:g}"
        return "birth-asphyxia", Flag("birth-asphyxia", when, (source,), reason)
    return "birth-asphyxia", None


@dataclass(frozen=True)
class Visit:
    ref: str  # "Encounter/id"
    on: date
    weeks: float | None  # gestational age at the visit, if known


def pregnancy_flags(
    episode: dict[str, Any],
    mother: dict[str, Any] | None,
    visits: list[Visit],
    deliveries: list[dict[str, Any]],
) -> dict[str, Flag]:
    """The flags that hold for one pregnancy, by code (teenage mother, late first visit, too few visits).

    A pregnancy has ended when a delivery is recorded or the episode is finished. Gestational age at a
    visit comes from the visit, else from the episode's LMP and the visit date.
    """
    limits = rules()
    episode_ref = f"EpisodeOfCare/{episode.get('id')}"
    found: dict[str, Flag] = {}
    delivery = min(
        (d for d in deliveries if model.day(d.get("performedDateTime")) is not None),
        key=lambda d: str(d.get("performedDateTime")),
        default=None,
    )
    period = episode.get("period") if isinstance(episode.get("period"), dict) else {}
    delivered_on = model.day(delivery.get("performedDateTime")) if delivery else model.day(period.get("end"))
    ended = delivery is not None or episode.get("status") == "finished"
    delivered_when = delivery.get("performedDateTime") if delivery else period.get("end")
    sources = (f"Procedure/{delivery['id']}",) if delivery else (episode_ref,)

    born = model.day(mother.get("birthDate")) if mother else None
    if born is not None and delivered_on is not None and mother is not None:
        age = model.age_on(born, delivered_on)
        if age < limits.teenage_age:
            found["teenage-mother"] = Flag(
                "teenage-mother",
                delivered_when,
                (*sources, f"Patient/{mother.get('id')}"),
                f"the mother was {age} on the day of delivery, under {limits.teenage_age}",
            )

    lmp = next((model.day(v) for v in model.extension_values(episode, model.LMP_EXT)), None)
    if visits:
        first = min(visits, key=lambda v: (v.on, v.ref))
        weeks = first.weeks
        if weeks is None and lmp is not None:
            weeks = (first.on - lmp).days // 7
        if weeks is not None and weeks > limits.first_anc_weeks:
            found["late-first-anc"] = Flag(
                "late-first-anc",
                first.on.isoformat(),
                (first.ref,),
                f"first antenatal visit at {weeks:g} weeks, after {limits.first_anc_weeks:g} weeks",
            )
        if ended and len(visits) < limits.recommended_anc_visits:
            found["few-anc-visits"] = Flag(
                "few-anc-visits",
                delivered_when or first.on.isoformat(),
                (episode_ref, *sorted(v.ref for v in visits)),
                f"{len(visits)} antenatal visits recorded, fewer than {limits.recommended_anc_visits}",
            )
    return found


def visit_of(encounter: dict[str, Any]) -> Visit | None:
    """An antenatal visit as the flags need it (None when it has no date or is not a real visit)."""
    if not model.is_active(encounter) or encounter.get("status") == "planned":
        return None
    period = encounter.get("period") if isinstance(encounter.get("period"), dict) else {}
    on = model.day(period.get("start"))
    if on is None:
        return None
    weeks = next(
        (w for w in map(model.weeks, model.extension_values(encounter, model.GESTATIONAL_AGE_EXT)) if w),
        None,
    )
    return Visit(f"Encounter/{encounter.get('id')}", on, weeks)
