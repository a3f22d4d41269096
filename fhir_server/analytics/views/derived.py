"""Views whose rows the server derives from a ViewDefinition's rows: growth with WHO z-scores.

A z-score needs the child's sex and age and the WHO reference tables, which FHIRPath cannot reach. So
the shipped ViewDefinition ``growth_zscores`` is an ordinary view of the growth Observations (its
columns are the inputs: ``observation_id``, ``patient_id``, ``date``, ``loinc``, ``value``, ``unit``)
that carries the extension ``view-derivation`` = ``who-growth-zscores``. Running it (``$run``,
``$viewdefinition-run``, ``termtem view run``) reads those rows and the ``children`` view over the same
records the caller may see, and gives one row per measurement visit (a child's measurements of one
day) with a pseudonymous child key, district, sex, age, the measurements and the z-scores of the WHO
2006 standards and 2007 reference, computed by ``fhir_server.summary.who`` (the same numbers as the
child's summary page).

The child key is a keyed hash of the record's id (HMAC-SHA256 with a secret the server keeps in the
store's key/value area): the same child has the same key in every run, and the key cannot be turned
back into the record without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_server import canonical

DERIVATION_URL = canonical.structure_definition("view-derivation")
GROWTH_ZSCORES = "who-growth-zscores"
DERIVATIONS = (GROWTH_ZSCORES,)
GROWTH_INPUTS = ("observation_id", "patient_id", "date", "loinc", "value", "unit")

_SECRET_NAMESPACE = "analytics"
_SECRET_KEY = "child-key-secret"
_DAYS_PER_MONTH = 30.4375
_WEIGHT, _HEIGHT, _LENGTH, _HEAD, _BMI = "29463-7", "8302-2", "8306-3", "9843-4", "39156-5"
# UCUM units the measurements come in, to kilograms, centimetres and kg/m2.
_TO_KG = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}
_TO_CM = {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54}
_TO_BMI = {"kg/m2": 1.0}

# (name, FHIR type, description): the columns of a growth_zscores row.
GROWTH_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("child_key", "string", "Pseudonymous key of the child's record (the same in every run)"),
    ("district_code", "string", "DOPA district (khet) code of the child's home address"),
    ("district_name", "string", "District name (Thai)"),
    ("subdistrict_code", "string", "DOPA subdistrict (khwaeng) code"),
    ("sex", "code", "male | female | other | unknown"),
    ("date", "date", "Day of the measurements"),
    ("age_days", "integer", "Age in days on that day"),
    ("age_months", "decimal", "Age in months (days / 30.4375, two decimals)"),
    ("weight_kg", "decimal", "Weight (kg)"),
    ("height_cm", "decimal", "Length or height (cm)"),
    ("measured_lying", "boolean", "True: length (lying), false: height (standing)"),
    ("head_cm", "decimal", "Head circumference (cm)"),
    ("bmi", "decimal", "Body mass index (kg/m2): measured, or from weight and height"),
    ("z_wfa", "decimal", "Weight-for-age z-score (WHO, 0-10 years)"),
    ("z_lhfa", "decimal", "Length/height-for-age z-score (WHO, 0-19 years)"),
    ("z_wflh", "decimal", "Weight-for-length/height z-score (WHO, 0-5 years)"),
    ("z_bmifa", "decimal", "BMI-for-age z-score (WHO, 0-19 years)"),
    ("z_hcfa", "decimal", "Head-circumference-for-age z-score (WHO, 0-5 years)"),
)


@dataclass
class Shape:
    """The columns of derived rows, in the form ``output.to_table`` reads from a ``View``."""

    columns: list[str]
    types: dict[str, str | None]
    collections: dict[str, bool] = field(default_factory=dict)


GROWTH_SHAPE = Shape([c for c, _, _ in GROWTH_COLUMNS], {c: t for c, t, _ in GROWTH_COLUMNS})


def derivation_of(resource: dict[str, Any]) -> tuple[str | None, str]:
    """The derivation a ViewDefinition asks for (None: an ordinary view), and where it is written."""
    for i, extension in enumerate(resource.get("extension") or []):
        if isinstance(extension, dict) and extension.get("url") == DERIVATION_URL:
            return extension.get("valueCode"), f"ViewDefinition.extension[{i}]"
    return None, "ViewDefinition.extension"


async def child_key_secret(store: Any) -> bytes:
    """The server's secret for child keys, created once and kept in the store."""
    held = await store.kv_get(_SECRET_NAMESPACE, _SECRET_KEY)
    if held is None:
        await store.kv_put(_SECRET_NAMESPACE, _SECRET_KEY, {"secret": secrets.token_hex(32)})
        held = await store.kv_get(_SECRET_NAMESPACE, _SECRET_KEY)
    return str((held or {})["secret"]).encode()


def child_key(secret: bytes, patient_id: str) -> str:
    return hmac.new(secret, patient_id.encode(), hashlib.sha256).hexdigest()[:24]


def _day(text: Any) -> date | None:
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _converted(value: Any, unit: Any, table: dict[str, float]) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or unit not in table:
        return None
    return float(value) * table[unit]


def _z(compute: Any) -> float | None:
    from fhir_server.summary import who

    try:
        return float(compute().value)
    except (ValueError, ArithmeticError, who.Implausible):
        return None


def zscores(
    sex: str | None,
    age_days: int | None,
    weight: float | None,
    height: float | None,
    lying: bool | None,
    head: float | None,
    bmi: float | None,
) -> tuple[float | None, ...]:
    """(wfa, lhfa, wflh, bmifa, hcfa) of one visit: None where the references do not apply (age, sex,
    a missing measurement, or a value no child can have)."""
    from fhir_server.summary import who

    if sex not in ("male", "female") or age_days is None or age_days < 0:
        return (None,) * 5
    return (
        _z(lambda: who.zscore("wfa", sex, age_days, weight)) if weight is not None else None,
        _z(lambda: who.zscore("lhfa", sex, age_days, height, recumbent=lying))
        if height is not None
        else None,
        _z(lambda: who.weight_for_length(sex, age_days, weight, height))
        if weight is not None and height is not None
        else None,
        _z(lambda: who.zscore("bmifa", sex, age_days, bmi)) if bmi is not None else None,
        _z(lambda: who.zscore("hcfa", sex, age_days, head)) if head is not None else None,
    )


def growth_rows(
    measurements: list[tuple[Any, ...]],
    measurement_columns: list[str],
    children: list[tuple[Any, ...]],
    children_columns: list[str],
    secret: bytes,
) -> list[tuple[Any, ...]]:
    """One row per visit (child and day) of the measurements whose child is among ``children``."""
    m = {name: measurement_columns.index(name) for name in GROWTH_INPUTS}
    c = {name: children_columns.index(name) for name in children_columns}
    child_of = {row[c["patient_id"]]: row for row in children if row[c["patient_id"]] is not None}
    visits: dict[tuple[str, date], dict[str, tuple[Any, Any]]] = {}
    for row in sorted(measurements, key=lambda r: str(r[m["observation_id"]])):
        patient, day = row[m["patient_id"]], _day(row[m["date"]])
        if patient not in child_of or day is None:
            continue
        found = visits.setdefault((patient, day), {})
        loinc = row[m["loinc"]]
        kind = "height" if loinc in (_HEIGHT, _LENGTH) else loinc
        if kind not in found and row[m["value"]] is not None:
            found[kind] = (row[m["value"]], row[m["unit"]], loinc)
    out = []
    for (patient, day), found in sorted(visits.items()):
        child = child_of[patient]
        weight = _converted(*found[_WEIGHT][:2], _TO_KG) if _WEIGHT in found else None
        height = _converted(*found["height"][:2], _TO_CM) if "height" in found else None
        lying = found["height"][2] == _LENGTH if "height" in found else None
        head = _converted(*found[_HEAD][:2], _TO_CM) if _HEAD in found else None
        bmi = _converted(*found[_BMI][:2], _TO_BMI) if _BMI in found else None
        if bmi is None and weight is not None and height:
            bmi = round(weight / (height / 100) ** 2, 2)
        if weight is None and height is None and head is None and bmi is None:
            continue
        born = _day(child[c["birth_date"]])
        age = (day - born).days if born is not None else None
        sex = child[c["sex"]]
        out.append(
            (
                child_key(secret, patient),
                child[c["district_code"]],
                child[c["district_name"]],
                child[c["subdistrict_code"]],
                sex,
                day.isoformat(),
                age,
                round(age / _DAYS_PER_MONTH, 2) if age is not None else None,
                weight,
                height,
                lying,
                head,
                bmi,
                *zscores(sex, age, weight, height, lying, head, bmi),
            )
        )
    return out
