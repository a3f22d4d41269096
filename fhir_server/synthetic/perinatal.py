"""Pregnancy, birth and newborn care for the generated children, first as the 43-file rows a health centre
keeps (PRENATAL, ANC, LABOR, NEWBORN, NEWBORNCARE, POSTNATAL), then as FHIR made from those rows by the
moph43 mapper itself, so the generated resources have exactly the profiles, extensions, codes and
references an import of the same rows gives.

Which children: those born in the ``WINDOW_YEARS`` before the reference date (under 6: the pre-school
years a health centre still holds the antenatal and birth records of) whose household has a mother
(relationship MTH). The birth weight is the child's own; the gestational age is drawn to fit it (most
babies under 2,500 g are preterm, a few at term are small for their age). Everything random comes from
the household's own perinatal stream, so the household's other records keep their values.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.mapping import MappedRecord, Mapper, load_format
from fhir_server.synthetic.identifiers import new_id
from fhir_server.synthetic.model import reference

WINDOW_YEARS = 6  # children younger than this at the reference date have a pregnancy and birth record
_WINDOW_DAYS = WINDOW_YEARS * 365
TWIN_SHARE = 0.03  # of households with two or more children: the two youngest are twins
TEEN_MOTHER_SHARE = 0.10  # mothers who were 15-19 when their first child in the household was born
MAX_MOTHER_AGE = 44  # no mother is older than this at the birth of a child in the window
_MIN_SPACING_DAYS = 365  # between two births of one mother (not twins): a pregnancy after the last birth
# Thai ANC schedule: the five periods (ANCNO 1-5) by gestational age in weeks.
_ANC_PERIODS = ((6, 12), (13, 20), (21, 26), (27, 32), (33, 40))
LATE_FIRST_ANC_SHARE = 0.22  # first visit after 12 weeks
INCOMPLETE_ANC_SHARE = 0.22  # fewer than the five recommended visits (besides those cut short by birth)
_NEWBORN_VISIT_DAYS = ((2, 7), (8, 15), (16, 42))  # the three home visits after birth
_NEWBORN_VISIT_COVERAGE = 0.85


@dataclass(slots=True)
class Newborn:
    """A child of the household as its birth record needs it."""

    child_id: str  # the generator's Patient id
    pid: str  # the child's PID at the health centre
    birth: date
    weight_g: int
    birth_weight_id: str  # id reserved (from the household's main stream) for the birth-weight Observation


@dataclass(slots=True)
class Mother:
    pid: str
    cid: str | None
    birth: date


@dataclass(slots=True)
class Births:
    """The perinatal part of one household: its 43-file rows and, once mapped, its FHIR resources."""

    tables: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    newborns: list[Newborn] = field(default_factory=list)

    def add(self, table: str, row: dict[str, str]) -> None:
        self.tables.setdefault(table, []).append(row)


def in_window(birth: date, reference_date: date) -> bool:
    return (reference_date - birth).days < _WINDOW_DAYS


def shape_births(rng: random.Random, births: list[date], reference_date: date) -> list[date]:
    """Make the children's birth dates ones a single mother can have had: the two youngest are sometimes
    twins, and children born in the window are at least a year apart (the older one moved earlier)."""
    out = list(births)
    order = sorted(range(len(out)), key=lambda i: out[i], reverse=True)  # youngest first
    if len(out) >= 2 and rng.random() < TWIN_SHARE and in_window(out[order[0]], reference_date):
        out[order[1]] = out[order[0]]
    for younger, older in itertools.pairwise(order):
        if out[older] == out[younger] or not in_window(out[younger], reference_date):
            continue
        if (out[younger] - out[older]).days < _MIN_SPACING_DAYS:
            out[older] = out[younger] - timedelta(days=_MIN_SPACING_DAYS + (out[older].toordinal() % 240))
    return out


def mother_birth(rng: random.Random, drawn: date, children: list[date], reference_date: date) -> date:
    """A mother's birth date: a share of teenage mothers, and none over ``MAX_MOTHER_AGE`` at a birth in
    the window."""
    oldest = min(children)
    if rng.random() < TEEN_MOTHER_SHARE:
        drawn = oldest - timedelta(days=rng.randint(15, 19) * 365 + rng.randrange(365))
    recent = [b for b in children if in_window(b, reference_date)]
    if recent:
        latest_allowed = max(recent) - timedelta(days=MAX_MOTHER_AGE * 365)
        if drawn < latest_allowed:
            drawn = latest_allowed + timedelta(days=rng.randrange(3 * 365))
    return drawn


def _ymd(day: date) -> str:
    return f"{day:%Y%m%d}"


def _gestational_weeks(rng: random.Random, grams: int, twins: bool) -> int:
    """Completed weeks at birth that fit the birth weight."""
    if grams < 1500:
        weeks = rng.randint(28, 32)
    elif grams < 2000:
        weeks = rng.randint(31, 35)
    elif grams < 2500:
        weeks = rng.randint(34, 36) if rng.random() < 0.6 else rng.randint(37, 39)
    elif rng.random() < 0.06:
        weeks = 36
    else:
        weeks = rng.choices((37, 38, 39, 40, 41), (12, 25, 32, 23, 8))[0]
    return min(weeks, rng.randint(34, 37)) if twins else weeks


def _delivery(rng: random.Random, twins: bool) -> tuple[str, str]:
    """(BTYPE, BRESULT ICD-10): method of delivery and the outcome code that goes with it."""
    if twins:
        return ("2", "O842") if rng.random() < 0.6 else ("1", "O840")
    btype = rng.choices("12345", (61, 34, 4, 0.5, 0.5))[0]
    caesarean = rng.choice(("O820", "O821"))  # elective or emergency
    return btype, {"1": "O800", "2": caesarean, "3": "O814", "4": "O810", "5": "O831"}[btype]


def add_pregnancies(
    births: Births,
    rng: random.Random,
    *,
    hospcode: str,
    hospital: str,
    mother: Mother,
    earlier_births: int,
    updated: str,
    reference_date: date,
) -> None:
    """The rows of each pregnancy that ended in the household's newborns (twins share one).

    ``earlier_births`` counts the household's older children born before the window, so GRAVIDA
    numbers the mother's pregnancies in order (with an occasional earlier loss)."""
    by_day: dict[date, list[Newborn]] = {}
    for newborn in sorted(births.newborns, key=lambda n: (n.birth, n.pid)):
        by_day.setdefault(newborn.birth, []).append(newborn)
    gravida = earlier_births + (1 if rng.random() < 0.12 else 0)
    for day, babies in by_day.items():
        gravida += 1
        _pregnancy(births, rng, hospcode, hospital, mother, gravida, day, babies, updated, reference_date)


def _pregnancy(
    births: Births,
    rng: random.Random,
    hospcode: str,
    hospital: str,
    mother: Mother,
    gravida: int,
    born: date,
    babies: list[Newborn],
    updated: str,
    reference_date: date,
) -> None:
    twins = len(babies) > 1
    weeks = _gestational_weeks(rng, min(b.weight_g for b in babies), twins)
    lmp = born - timedelta(days=weeks * 7 + rng.randrange(7))
    edc = lmp + timedelta(days=280)
    base = {"HOSPCODE": hospcode, "PID": mother.pid, "CID": mother.cid or "", "D_UPDATE": updated}

    visits = _antenatal_visits(rng, lmp, born)
    for number, (on, ga, period) in enumerate(visits, start=1):
        births.add(
            "ANC",
            {
                **base,
                "SEQ": f"{mother.pid}{gravida:02d}{number:02d}",
                "DATE_SERV": _ymd(on),
                "GRAVIDA": str(gravida),
                "ANCNO": str(period),
                "GA": str(ga),
                "ANCRESULT": "2" if rng.random() < 0.08 else "1",
                "ANCPLACE": hospcode,
            },
        )
    screened = visits[0][0] if visits else lmp + timedelta(days=84)
    thal = rng.choices("123", (82, 14, 4))[0]
    births.add(
        "PRENATAL",
        {
            **base,
            "GRAVIDA": str(gravida),
            "LMP": _ymd(lmp),
            "EDC": _ymd(edc),
            "VDRL_RESULT": "2" if rng.random() < 0.004 else "1",
            "HB_RESULT": "2" if rng.random() < 0.04 else "1",
            "HIV_RESULT": "2" if rng.random() < 0.005 else "1",
            "DATE_HCT": _ymd(screened),
            "HCT_RESULT": f"{min(46.0, max(24.0, rng.gauss(35.5, 3.0))):.1f}",
            "THALASSEMIA": thal,
        },
    )

    btype, outcome = _delivery(rng, twins)
    bplace = rng.choices("123", (97, 2, 1))[0]
    bhosp = {"1": hospital, "2": hospcode, "3": ""}[bplace]
    attendant = {"1": "1" if btype != "1" or rng.random() < 0.6 else "2", "2": "2", "3": "4"}[bplace]
    births.add(
        "LABOR",
        {
            **base,
            "GRAVIDA": str(gravida),
            "LMP": _ymd(lmp),
            "EDC": _ymd(edc),
            "BDATE": _ymd(born),
            "BRESULT": outcome,
            "BPLACE": bplace,
            "BHOSP": bhosp,
            "BTYPE": btype,
            "BDOCTOR": attendant,
            "LBORN": str(len(babies)),
            "SBORN": "0",
        },
    )

    hour, minute = rng.randrange(24), rng.randrange(50)  # twins come a few minutes apart, same day
    care_days = [
        born + timedelta(days=rng.randint(low, high))
        for low, high in _NEWBORN_VISIT_DAYS
        if rng.random() < _NEWBORN_VISIT_COVERAGE
    ]
    care_days = [day for day in care_days if day <= reference_date]  # nothing after "today"
    for order, baby in enumerate(babies, start=1):
        asphyxia = rng.random() < (0.08 if baby.weight_g < 2500 else 0.015)
        tsh_done = rng.random() < 0.97
        births.add(
            "NEWBORN",
            {
                "HOSPCODE": hospcode,
                "PID": baby.pid,
                "MPID": mother.pid,
                "GRAVIDA": str(gravida),
                "GA": str(weeks),
                "BDATE": _ymd(born),
                "BTIME": f"{hour:02d}{minute + 3 * (order - 1):02d}00",
                "BPLACE": bplace,
                "BHOSP": bhosp,
                "BIRTHNO": str(order),
                "BTYPE": btype,
                "BDOCTOR": attendant,
                "BWEIGHT": str(baby.weight_g),
                "ASPHYXIA": "1" if asphyxia else "2",
                "VITK": "1" if rng.random() < 0.98 else "2",
                "TSH": "1" if tsh_done else "2",
                "TSHRESULT": f"{min(60.0, rng.lognormvariate(1.1, 0.6)):.2f}" if tsh_done else "",
                "D_UPDATE": updated,
            },
        )
        food = rng.choices("1234", (50, 10, 30, 10))[0]
        for number, on in enumerate(care_days, start=1):
            births.add(
                "NEWBORNCARE",
                {
                    "HOSPCODE": hospcode,
                    "PID": baby.pid,
                    "SEQ": f"{baby.pid}{number:02d}",
                    "BDATE": _ymd(born),
                    "BCARE": _ymd(on),
                    "BCPLACE": hospcode,
                    "BCARERESULT": "2" if rng.random() < 0.05 else "1",
                    "FOOD": food,
                    "D_UPDATE": updated,
                },
            )
    for number, on in enumerate(care_days, start=1):
        births.add(
            "POSTNATAL",
            {
                **base,
                "SEQ": f"{mother.pid}{gravida:02d}{number:02d}",
                "GRAVIDA": str(gravida),
                "BDATE": _ymd(born),
                "PPCARE": _ymd(on),
                "PPPLACE": hospcode,
                "PPRESULT": "2" if rng.random() < 0.04 else "1",
            },
        )


def _antenatal_visits(rng: random.Random, lmp: date, born: date) -> list[tuple[date, int, int]]:
    """(date, gestational age in weeks, ANC period) of each visit before the birth."""
    first = rng.randint(13, 22) if rng.random() < LATE_FIRST_ANC_SHARE else rng.randint(6, 12)
    planned = [first]
    for low, high in _ANC_PERIODS:
        if low > first:
            planned.append(rng.randint(low, min(high, 36)))  # the last one before term
    if rng.random() < INCOMPLETE_ANC_SHARE and len(planned) > 2:
        keep = rng.randint(1, len(planned) - 2)
        planned = [planned[0], *sorted(rng.sample(planned[1:], keep))]
    else:
        while len(planned) < 5:  # a late starter still comes five times: twice in a later period
            planned = sorted({*planned, rng.randint(planned[0] + 1, 36)})
    out = []
    for weeks in planned:
        on = lmp + timedelta(days=weeks * 7 + rng.randrange(7))
        if on >= born:
            break
        period = next(n for n, (_, high) in enumerate(_ANC_PERIODS, start=1) if weeks <= high or n == 5)
        out.append((on, (on - lmp).days // 7, period))
    return out


# --- FHIR, by the mapper ---------------------------------------------------------------------------


class PerinatalMappingError(RuntimeError):
    """The mapper refused a generated row: a bug in the generator (or a reference date in the future)."""


def to_fhir(
    births: Births,
    rng: random.Random,
    *,
    mother_row: dict[str, str],
    mother_address: dict[str, str],
    person_rows: list[dict[str, str]],
    children: Mapping[str, str],
    urn: bool,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], str]:
    """Map the household's rows with the moph43 mapper and give the resources the generator's ids and
    references.

    The mother's PERSON row is mapped (her Patient); ``person_rows`` (all of the household's, hers
    among them) are only looked up, and the newborns' Patients are the generator's own (``children``
    maps PID to Patient id). Returns (resources, birth-weight Observation by child PID, the mother's
    Patient id); the children's MTH RelatedPersons are the generator's own and are not among them.
    """
    # Rows this module wrote: their columns are checked where they are imported (tests import the
    # generated tables through the checking path), so each household's rows skip the schema here.
    mapper = Mapper(load_format("moph43"), check_columns=False)
    mapper.index_rows("PERSON", person_rows)
    mapper.index_rows("ADDRESS", [mother_address])
    for pid in children:
        mapper.accept("PERSON", (mother_row["HOSPCODE"], pid))
    tables = {"PERSON": [mother_row], **births.tables}
    records: list[MappedRecord] = []
    for item in mapper.map_tables(tables):
        if not isinstance(item, MappedRecord):
            raise PerinatalMappingError(f"{item.table} row {item.row} {item.field}: {item.reason}")
        records.append(item)
    return _with_ids(records, rng, births, mother_row["HOSPCODE"], children, urn)


def _with_ids(
    records: list[MappedRecord],
    rng: random.Random,
    births: Births,
    hospcode: str,
    children: Mapping[str, str],
    urn: bool,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], str]:
    reserved = {n.pid: n.birth_weight_id for n in births.newborns}
    targets: dict[str, tuple[str, str]] = {}  # fullUrl or conditional reference -> (type, id)
    pid_system = canonical.local_record_system(hospcode, "PID")
    for pid, patient_id in children.items():
        targets[f"Patient?identifier={pid_system}|{pid}"] = ("Patient", patient_id)

    entries: dict[str, dict[str, Any]] = {}
    for record in records:
        for entry in record.entries:
            entries[entry["fullUrl"]] = entry  # a later record's version wins, as in one bundle
    kept: list[dict[str, Any]] = []
    birth_weights: dict[str, dict[str, Any]] = {}
    mother_id = ""
    for url, entry in entries.items():
        resource = entry["resource"]
        kind = resource["resourceType"]
        if kind == "RelatedPerson":
            continue  # the child's MTH RelatedPerson: the generator's own gets the link
        child_pid = _child_pid(resource, pid_system)
        is_weight = kind == "Observation" and any(
            c.get("code") == "8339-4" for c in resource.get("code", {}).get("coding", [])
        )
        id_ = reserved[child_pid] if is_weight and child_pid in reserved else new_id(rng)
        targets[url] = (kind, id_)
        for identifier in resource.get("identifier", []):
            targets.setdefault(f"{kind}?identifier={identifier['system']}|{identifier['value']}", (kind, id_))
        if kind == "Patient":
            mother_id = id_
        out = {"resourceType": kind, "id": id_, **{k: v for k, v in resource.items() if k != "resourceType"}}
        if is_weight and child_pid is not None:
            birth_weights[child_pid] = out
        else:
            kept.append(out)
    resolved = [_references(r, targets, urn) for r in kept]
    weights = {pid: _references(r, targets, urn) for pid, r in birth_weights.items()}
    return resolved, weights, mother_id


def _child_pid(resource: dict[str, Any], pid_system: str) -> str | None:
    subject = resource.get("subject")
    text = subject.get("reference") if isinstance(subject, dict) else None
    prefix = f"Patient?identifier={pid_system}|"
    return text[len(prefix):] if isinstance(text, str) and text.startswith(prefix) else None


def _references(value: Any, targets: Mapping[str, tuple[str, str]], urn: bool) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            if key == "reference" and isinstance(sub, str):
                if sub not in targets:
                    raise PerinatalMappingError(f"unresolved reference {sub}")
                kind, id_ = targets[sub]
                out[key] = reference(urn, kind, id_)["reference"]
            else:
                out[key] = _references(sub, targets, urn)
        return out
    if isinstance(value, list):
        return [_references(v, targets, urn) for v in value]
    return value
