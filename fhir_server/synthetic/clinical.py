"""A child's health record: birth weight, growth over time, DSPM/DAIM screenings and EPI immunisations."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.synthetic.config import PopulationConfig
from fhir_server.synthetic.identifiers import new_id
from fhir_server.synthetic.model import Child, coding

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CVX = "http://hl7.org/fhir/sid/cvx"
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_VITAL_SIGNS = [{"coding": [coding(_OBS_CATEGORY, "vital-signs", "Vital Signs")]}]
_SURVEY = [{"coding": [coding(_OBS_CATEGORY, "survey", "Survey")]}]

# WHO 2006 (0-5 y) and Thai DOH (6-18 y) medians, approximated: age in months -> (boys, girls).
_MONTHS = [0, 1, 2, 4, 6, 9, 12, 18, 24, 36, 48, 60, 72, 96, 120, 144, 168, 192, 216]
_WEIGHT = [
    (3.3, 3.2),
    (4.5, 4.2),
    (5.6, 5.1),
    (7.0, 6.4),
    (7.9, 7.3),
    (8.9, 8.2),
    (9.6, 8.9),
    (10.9, 10.2),
    (12.2, 11.5),
    (14.3, 13.9),
    (16.3, 16.1),
    (18.3, 18.2),
    (20.5, 20.2),
    (25.4, 25.0),
    (31.2, 31.9),
    (39.0, 41.5),
    (50.0, 49.0),
    (58.0, 52.5),
    (63.0, 54.0),
]
_HEIGHT = [
    (49.9, 49.1),
    (54.7, 53.7),
    (58.4, 57.1),
    (63.9, 62.1),
    (67.6, 65.7),
    (72.0, 70.1),
    (75.7, 74.0),
    (82.3, 80.7),
    (87.8, 86.4),
    (96.1, 95.1),
    (103.3, 102.7),
    (110.0, 109.4),
    (116.0, 115.1),
    (127.3, 126.6),
    (137.8, 138.6),
    (149.1, 151.2),
    (163.2, 158.0),
    (170.5, 159.5),
    (172.0, 160.0),
]
_HEAD = [
    (34.5, 33.9),
    (37.3, 36.5),
    (39.1, 38.3),
    (41.6, 40.6),
    (43.3, 42.2),
    (45.0, 43.8),
    (46.1, 45.0),
    (47.4, 46.2),
    (48.3, 47.2),
    (49.5, 48.5),
]
# Well-child visits (months) then yearly school health checks.
_VISITS = [1, 2, 4, 6, 9, 12, 18, 24, 30, 36, 42, 48, 60, *range(72, 217, 12)]

DSPM_BANDS = (9, 18, 30, 42, 60)
DSPM_DOMAINS = {
    "GM": ("1B20", "การเคลื่อนไหว"),
    "FM": ("1B21", "กล้ามเนื้อมัดเล็กและสติปัญญา"),
    "RL": ("1B22", "การเข้าใจภาษา"),
    "EL": ("1B23", "การใช้ภาษา"),
    "PS": ("1B24", "การช่วยเหลือตัวเองและสังคม"),
}
_RESULT_DISPLAY = {
    "pass": "สมวัย",
    "suspected-delay": "สงสัยล่าช้า (ส่งเสริมพัฒนาการ 1 เดือนแล้วประเมินซ้ำ)",
    "suspected-delay-refer": "สงสัยล่าช้า ส่งต่อทันที",
    "delay": "ล่าช้า (ช้ากว่าปกติ)",
}
# Last digit of a domain's MOPH SPECIALPP screening code: normal, suspected (promote), delayed (refer).
_DOMAIN_DIGIT = {"pass": "0", "suspected-delay": "1", "suspected-delay-refer": "2", "delay": "2"}
_TOOL_DISPLAY = {
    "DSPM": "คู่มือเฝ้าระวังและส่งเสริมพัฒนาการเด็กปฐมวัย (DSPM)",
    "DAIM": "คู่มือประเมินเพื่อช่วยเหลือเด็กกลุ่มเสี่ยง (DAIM)",
}

# Thai EPI: (age in months, MOPH code, display, CVX code or None, dose number, girls only).
_EPI: list[tuple[float, str, str, str | None, int, bool]] = [
    (0, "010", "BCG", "19", 1, False),
    (0, "041", "HBV1", "08", 1, False),
    (2, "D21", "DTP-HB-Hib1", None, 1, False),
    (2, "081", "OPV1", None, 1, False),
    (2, "R11", "Rota1", "119", 1, False),
    (4, "D22", "DTP-HB-Hib2", None, 2, False),
    (4, "082", "OPV2", None, 2, False),
    (4, "401", "IPV", "10", 1, False),
    (4, "R12", "Rota2", "119", 2, False),
    (6, "D23", "DTP-HB-Hib3", None, 3, False),
    (6, "083", "OPV3", None, 3, False),
    (9, "061", "MMR1", "03", 1, False),
    (12, "J11", "LAJE1", None, 1, False),
    (18, "034", "DTP4", "01", 4, False),
    (18, "084", "OPV4", None, 4, False),
    (18, "073", "MMR2", "03", 2, False),
    (30, "J12", "LAJE2", None, 2, False),
    (48, "035", "DTP5", "01", 5, False),
    (48, "085", "OPV5", None, 5, False),
    (132, "310", "HPV", "137", 1, True),
    (144, "106", "dT", "139", 1, False),
]
_CVX_DISPLAY = {
    "19": "BCG",
    "08": "Hep B, adolescent or pediatric",
    "119": "rotavirus, monovalent",
    "10": "IPV",
    "03": "MMR",
    "01": "DTP",
    "137": "HPV, unspecified formulation",
    "139": "Td(adult) unspecified formulation",
}


@dataclass(slots=True)
class DevelopmentalConcern:
    """A screening that needs follow-up by another agency (a referral is raised for it)."""

    on: date
    observation_id: str
    result: str


def _interpolate(table: list[tuple[float, float]], months: float, girl: bool) -> float:
    i = bisect.bisect_right(_MONTHS, months) - 1
    if i >= len(table) - 1:
        return table[-1][girl]
    m0, m1 = _MONTHS[i], _MONTHS[i + 1]
    v0, v1 = table[i][girl], table[i + 1][girl]
    return v0 + (v1 - v0) * (months - m0) / (m1 - m0)


def _observation(
    child: Child,
    profile: str | None,
    category: list[dict[str, Any]],
    code: dict[str, Any],
    on: date,
    performer: dict[str, str],
    extension: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": new_id(child.rng)}
    if profile:
        resource["meta"] = {"profile": [canonical.structure_definition(profile)]}
    if extension:
        resource["extension"] = extension
    resource.update(
        {
            "status": "final",
            "category": category,
            "code": code,
            "subject": child.reference,
            "effectiveDateTime": on.isoformat(),
            "performer": [performer],
        }
    )
    return resource


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _measure(
    child: Child, loinc: str, display: str, on: date, performer: dict[str, str], value: float, unit: str
) -> dict[str, Any]:
    code = {"coding": [coding(LOINC, loinc, display)], "text": display}
    resource = _observation(child, canonical.PROFILE_GROWTH, _VITAL_SIGNS, code, on, performer)
    resource["valueQuantity"] = _quantity(value, unit)
    return resource


def birth_weight(child: Child) -> dict[str, Any]:
    """Birth weight in grams (LOINC 8339-4), as the birth hospital recorded it."""
    code = {"coding": [coding(LOINC, "8339-4", "Birthweight")], "text": "Birth weight"}
    resource = _observation(
        child, None, _VITAL_SIGNS, code, child.birth_date, child.agencies.hospital.reference
    )
    resource["valueQuantity"] = _quantity(child.birth_weight_g, "g")
    return resource


def growth(child: Child, config: PopulationConfig) -> list[dict[str, Any]]:
    """Weight, length or height, head circumference (under 3) and BMI (from 2) at scheduled visits."""
    rng, girl = child.rng, child.gender == "female"
    weight_z = (child.birth_weight_g - 3150) / 450 * 0.6 + rng.gauss(0, 0.8)
    height_z = rng.gauss(0, 1)
    out: list[dict[str, Any]] = []
    for months in _VISITS:
        on = child.at_months(months, jitter_days=14)
        if on > child.reference_date:
            break
        if rng.random() >= config.growth_visit_coverage:
            continue
        exact = (on - child.birth_date).days / 30.4375
        performer = child.provider_at(on).reference
        h = _interpolate(_HEIGHT, exact, girl) * (1 + 0.04 * (height_z + rng.gauss(0, 0.2)))
        w = _interpolate(_WEIGHT, exact, girl) * (1 + 0.11 * (weight_z + rng.gauss(0, 0.25)))
        w, h = round(max(w, 1.5), 1), round(h, 1)
        out.append(_measure(child, "29463-7", "Body weight", on, performer, w, "kg"))
        if months < 24:
            out.append(_measure(child, "8306-3", "Body height --lying", on, performer, h, "cm"))
        else:
            out.append(_measure(child, "8302-2", "Body height", on, performer, h, "cm"))
        if months <= 36:
            hc = _interpolate(_HEAD, min(exact, 36), girl) * (1 + 0.03 * rng.gauss(0, 1))
            out.append(
                _measure(
                    child, "9843-4", "Head Occipital-frontal circumference", on, performer, round(hc, 1), "cm"
                )
            )
        if months >= 24:
            out.append(
                _measure(
                    child,
                    "39156-5",
                    "Body mass index (BMI) [Ratio]",
                    on,
                    performer,
                    round(w / (h / 100) ** 2, 1),
                    "kg/m2",
                )
            )
    return out


def _result_concept(result: str, moph_code: str | None) -> dict[str, Any]:
    """Our result, with the MOPH SPECIALPP code it maps to where one exists (a confirmed delay has none)."""
    codings = [coding(canonical.code_system(canonical.CS_DSPM_RESULT), result, _RESULT_DISPLAY[result])]
    if moph_code is not None:
        codings.append(coding(canonical.code_system(canonical.CS_MOPH_SPECIALPP), moph_code))
    return {"coding": codings}


def _screening(
    child: Child, tool: str, band: int, on: date, result: str, moph_code: str | None, weak: dict[str, str]
) -> dict[str, Any]:
    code = {
        "coding": [coding(canonical.code_system(canonical.CS_SCREENING_TOOL), tool, _TOOL_DISPLAY[tool])],
        "text": f"{tool} developmental screening",
    }
    performer = (child.childcare or child.health_centre).reference
    resource = _observation(
        child,
        canonical.PROFILE_DEVELOPMENTAL_SCREENING,
        _SURVEY,
        code,
        on,
        performer,
        extension=[
            {
                "url": canonical.structure_definition(canonical.EXT_DSPM_AGE_BAND),
                "valueCoding": coding(
                    canonical.code_system(canonical.CS_DSPM_AGE_BAND), str(band), f"อายุ {band} เดือน"
                ),
            }
        ],
    )
    resource["valueCodeableConcept"] = _result_concept(result, moph_code)
    components = []
    for domain, (block, display) in DSPM_DOMAINS.items():
        domain_result = weak.get(domain, "pass")
        components.append(
            {
                "code": {
                    "coding": [coding(canonical.code_system(canonical.CS_DSPM_DOMAIN), domain, display)]
                },
                "valueCodeableConcept": _result_concept(domain_result, block + _DOMAIN_DIGIT[domain_result]),
            }
        )
    resource["component"] = components
    return resource


def development(
    child: Child, config: PopulationConfig
) -> tuple[list[dict[str, Any]], list[DevelopmentalConcern]]:
    """DSPM (DAIM for low-birth-weight infants up to 18 months) at each age band the child has reached.

    A suspected delay is either promoted at home and re-screened a month later, or referred at once;
    a re-screen that still fails is a delay and is referred too.
    """
    rng = child.rng
    out: list[dict[str, Any]] = []
    concerns: list[DevelopmentalConcern] = []
    for band in DSPM_BANDS:
        on = child.at_months(band, jitter_days=29)
        if on > child.reference_date or rng.random() >= config.dspm_coverage:
            continue
        tool = "DAIM" if child.birth_weight_g < 2500 and band <= 18 else "DSPM"
        if rng.random() >= config.suspected_delay_rate:
            out.append(_screening(child, tool, band, on, "pass", "1B260", {}))
            continue
        domains = rng.sample(list(DSPM_DOMAINS), 1 if rng.random() < 0.7 else 2)
        weak = dict.fromkeys(domains, "suspected-delay")
        if rng.random() < config.refer_immediately_share:
            weak = dict.fromkeys(domains, "suspected-delay-refer")
            first = _screening(child, tool, band, on, "suspected-delay-refer", "1B262", weak)
            out.append(first)
            concerns.append(DevelopmentalConcern(on, first["id"], "suspected-delay-refer"))
            continue
        out.append(_screening(child, tool, band, on, "suspected-delay", "1B261", weak))
        again = on + timedelta(days=28 + rng.randrange(5))
        if again > child.reference_date:
            continue
        if rng.random() < config.rescreen_delay_rate:
            second = _screening(child, tool, band, again, "delay", None, dict.fromkeys(domains, "delay"))
            out.append(second)
            concerns.append(DevelopmentalConcern(again, second["id"], "delay"))
        else:
            out.append(_screening(child, tool, band, again, "pass", "1B260", {}))
    return out, concerns


def immunizations(child: Child, config: PopulationConfig) -> list[dict[str, Any]]:
    """Doses of the Thai EPI schedule given so far, most on time, some late, a few missed."""
    rng = child.rng
    moph = canonical.code_system(canonical.CS_MOPH_VACCINE)
    out: list[dict[str, Any]] = []
    for months, code, display, cvx, dose, girls_only in _EPI:
        if girls_only and child.gender != "female":
            continue
        late = rng.random() < 0.15
        on = child.at_months(months, jitter_days=60 if late else 7)
        if on > child.reference_date or rng.random() >= config.vaccine_coverage:
            continue
        codings = [coding(moph, code)]
        if cvx:
            codings.append(coding(CVX, cvx, _CVX_DISPLAY[cvx]))
        performer = child.agencies.hospital if months == 0 else child.health_centre
        out.append(
            {
                "resourceType": "Immunization",
                "id": new_id(rng),
                "status": "completed",
                "vaccineCode": {"coding": codings, "text": display},
                "patient": child.reference,
                "occurrenceDateTime": on.isoformat(),
                "primarySource": True,
                "lotNumber": f"{code}{rng.randrange(100000):05d}",
                "performer": [{"actor": performer.reference}],
                "protocolApplied": [{"series": "Thai EPI", "doseNumberPositiveInt": dose}],
            }
        )
    return out
