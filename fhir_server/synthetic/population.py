"""The orchestrator: a stream of households (children, guardians and everything recorded about them),
preceded by the agencies they refer to. Each household has its own seeded random stream, so the output
is byte-identical for a seed and memory does not grow with the population size."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.synthetic import clinical, perinatal, social, tables
from fhir_server.synthetic.agencies import AgencyDirectory, build_agencies
from fhir_server.synthetic.config import PopulationConfig
from fhir_server.synthetic.identifiers import (
    cid_check_digit,
    cid_identifier,
    gcode_identifier,
    hn_identifier,
    make_gcode,
    new_id,
)
from fhir_server.synthetic.model import Child, Guardian, coding, reference
from fhir_server.synthetic.names import human_names, pick_family, pick_given, prefix_for
from fhir_server.synthetic.places import Place, address, bangkok_places

_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
_NATIONALITY_EXT = canonical.EXT_PATIENT_NATIONALITY
_MAX_AGE_DAYS = 19 * 365 - 1  # children 0-18
_SERIAL_SPACE = 10_000_000  # the 7 "group and sequence" digits of a CID
# Relationship code -> (system is ours?, display, sex, generation above the child).
_RELATIONSHIPS: dict[str, tuple[bool, str, str, int]] = {
    "MTH": (False, "mother", "female", 1),
    "FTH": (False, "father", "male", 1),
    "GRMTH": (False, "grandmother", "female", 2),
    "GRFTH": (False, "grandfather", "male", 2),
    "AUNT": (False, "aunt", "female", 1),
    "UNCLE": (False, "uncle", "male", 1),
    "MTHFOST": (False, "foster mother", "female", 1),
    "legal-guardian": (True, "ผู้ปกครองตามกฎหมาย", "male", 1),
}
_GUARDIAN_PATTERNS: list[tuple[tuple[str, ...], float]] = [
    (("MTH", "FTH"), 58),
    (("MTH",), 20),
    (("FTH",), 5),
    (("GRMTH",), 7),
    (("GRMTH", "GRFTH"), 4),
    (("AUNT",), 2),
    (("UNCLE",), 1),
    (("MTHFOST",), 1.5),
    (("legal-guardian",), 1.5),
]
_PATTERNS = [p for p, _ in _GUARDIAN_PATTERNS]
_PATTERN_WEIGHTS = [w for _, w in _GUARDIAN_PATTERNS]


class _Person:
    """A household member before it becomes FHIR: who they are and how they are identified."""

    __slots__ = ("birth", "gender", "given", "identifiers", "married", "phone")

    def __init__(
        self,
        gender: str,
        birth: date,
        given: tuple[str, str],
        identifiers: list[dict[str, Any]],
        phone: str | None = None,
        married: bool = False,
    ) -> None:
        self.gender, self.birth, self.given = gender, birth, given
        self.identifiers, self.phone, self.married = identifiers, phone, married


@dataclass(slots=True)
class Household:
    """One household's resources and the 43-file rows its health centre holds about it (the first item of
    a stream is the agencies, with no children and no rows)."""

    resources: list[dict[str, Any]]
    children: int = 0
    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def generate(
    seed: int,
    children: int | None = None,
    *,
    resources: int | None = None,
    config: PopulationConfig | None = None,
    reference_date: date | None = None,
    urn_references: bool = False,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the agencies first (one list), then one list of resources per household.

    Stops after ``children`` children, or once about ``resources`` resources (agencies included) have
    been yielded; with neither it never stops. With ``urn_references`` the references between resources
    of one household are ``urn:uuid:<id>`` (for transaction bundles); otherwise ``Type/id``.
    Agencies are always referenced as ``Organization/<id>``.
    """
    for household in households(
        seed, children, resources=resources, config=config, reference_date=reference_date,
        urn_references=urn_references,
    ):
        yield household.resources


def households(
    seed: int,
    children: int | None = None,
    *,
    resources: int | None = None,
    config: PopulationConfig | None = None,
    reference_date: date | None = None,
    urn_references: bool = False,
    with_rows: bool = False,
) -> Iterator[Household]:
    """``generate`` with each household's child count and, with ``with_rows``, all its 43-file rows
    (for the tables writer; without, only the perinatal ones the FHIR is made from)."""
    if children is not None and children < 0:
        raise ValueError("children must not be negative")
    if resources is not None and resources < 0:
        raise ValueError("resources must not be negative")
    config = config or PopulationConfig()
    if reference_date is not None:
        config = replace(config, reference_date=reference_date)
    directory = build_agencies(seed)
    yield Household(list(directory.resources))
    produced, made, index = len(directory.resources), 0, 0
    while True:
        if children is not None and made >= children:
            return
        if resources is not None and produced >= resources:
            return
        limit = 3 if children is None else min(3, children - made)
        household = _household(seed, index, limit, directory, config, urn_references, with_rows)
        made += household.children
        produced += len(household.resources)
        index += 1
        yield household


def _serial(seed: int, n: int) -> int:
    """A bijection of the person number onto the 7 CID serial digits, so ids never repeat per office."""
    return (n * 7_919 + seed * 104_729) % _SERIAL_SPACE


def _cid(category: str, office: str, serial: int) -> str:
    body = f"{category}{office}{serial:07d}"
    return body + str(cid_check_digit(body))


def _household(
    seed: int,
    index: int,
    max_children: int,
    directory: AgencyDirectory,
    config: PopulationConfig,
    urn: bool,
    with_rows: bool,
) -> Household:
    rng = random.Random(f"termtem-household:{seed}:{index}")
    # Pregnancies and births draw from a stream of their own, so the rest of the household keeps its values.
    birth_rng = random.Random(f"termtem-perinatal:{seed}:{index}")
    ref_date = config.reference_date
    places = bangkok_places()
    place = places[rng.randrange(len(places))]
    local = directory.by_district[place.district_code]
    health_centre = local.health_centres[rng.randrange(len(local.health_centres))]
    stateless = rng.random() < config.stateless_rate
    family = pick_family(rng, myanmar=stateless)
    home = address(rng, place)
    office = f"10{place.district_code[2:]}"
    n_children = min(max_children, rng.choices((1, 2, 3), (50, 35, 15))[0])

    kids: list[_Person] = []
    for k in range(n_children):
        gender = "male" if rng.random() < 0.512 else "female"
        birth = ref_date - timedelta(days=rng.randrange(_MAX_AGE_DAYS))
        identifiers = [hn_identifier(health_centre.hcode or "00000", f"{index * 4 + k:08d}")]
        kids.append(_Person(gender, birth, pick_given(rng, gender, stateless), identifiers))
    shaped = perinatal.shape_births(birth_rng, [k.birth for k in kids], ref_date)
    for kid, day in zip(kids, shaped, strict=True):
        kid.birth = day
    oldest = min(kid.birth for kid in kids)

    pattern = rng.choices(_PATTERNS, _PATTERN_WEIGHTS)[0]
    adults: list[tuple[str, _Person]] = []
    for slot, relationship in enumerate(pattern):
        _, _, gender, generation = _RELATIONSHIPS[relationship]
        age_gap = rng.randint(18, 38) + (rng.randint(18, 30) if generation == 2 else 0)
        birth = oldest - timedelta(days=age_gap * 365 + rng.randrange(365))
        if relationship == "MTH":
            birth = perinatal.mother_birth(birth_rng, birth, [k.birth for k in kids], ref_date)
        adult_identifiers: list[dict[str, Any]] = []
        if not stateless:
            adult_identifiers.append(
                cid_identifier(
                    _cid("1" if birth.year >= 1984 else "3", office, _serial(seed, index * 8 + 4 + slot))
                )
            )
        elif rng.random() < 0.6:
            adult_identifiers.append(
                cid_identifier(_cid(rng.choice("06"), office, _serial(seed, index * 8 + 4 + slot)))
            )
        married = (relationship in ("MTH", "GRMTH") and len(pattern) == 2) or rng.random() < 0.4
        phone = f"0{rng.choice('689')}{rng.randrange(10**8):08d}"
        adults.append(
            (
                relationship,
                _Person(gender, birth, pick_given(rng, gender, stateless), adult_identifiers, phone, married),
            )
        )

    hospcode = health_centre.hcode or "00000"
    updated = tables.updated_stamp(ref_date)
    mother = next((adult for relationship, adult in adults if relationship == "MTH"), None)
    births = perinatal.Births()
    rows: dict[str, list[dict[str, str]]] = {"PERSON": [], "ADDRESS": []}
    care: list[tuple[str, str | None, int, int]] = []  # (PID, CID, first and end index in out) per child
    weight_slots: dict[str, int] = {}  # PID -> index in out of the birth-weight Observation to fill
    mother_links: list[int] = []  # indexes in out of the newborns' MTH RelatedPersons
    birth_days = [k.birth for k in kids]
    out: list[dict[str, Any]] = []
    count = 0
    for k, kid in enumerate(kids):
        age_years = (ref_date - kid.birth).days // 365
        enrol = 0.6 if stateless else 1.0
        childcare = school = None
        if 2 <= age_years <= 5 and rng.random() < 0.8 * enrol:
            childcare = local.childcare_centres[rng.randrange(len(local.childcare_centres))]
        elif age_years >= 6 and rng.random() < (0.95 if age_years < 15 else 0.7) * enrol:
            school = local.schools[rng.randrange(len(local.schools))]
        serial = _serial(seed, index * 8 + k)
        myanmar_national = False
        if not stateless:
            kid.identifiers.insert(0, cid_identifier(_cid("1", office, serial)))
        else:
            draw = rng.random()
            if draw < 0.35:
                kid.identifiers.insert(0, cid_identifier(_cid("0", office, serial)))
            elif draw < 0.5:
                kid.identifiers.insert(0, cid_identifier(_cid("7", office, serial)))
                myanmar_national = True
            elif childcare or school:
                kid.identifiers.insert(0, gcode_identifier(make_gcode(rng)))
        weight = max(900, min(5200, round(rng.gauss(3100, 450) / 10) * 10))
        if birth_days.count(kid.birth) > 1:  # twins are smaller
            weight = max(900, round(weight * 0.8 / 10) * 10)
        child = Child(
            rng=rng,
            urn=urn,
            reference_date=ref_date,
            id=new_id(rng),
            gender=kid.gender,
            birth_date=kid.birth,
            stateless=stateless,
            agencies=local,
            health_centre=health_centre,
            childcare=childcare,
            school=school,
            birth_weight_g=weight,
        )
        patient = _patient(child, kid, family, home, myanmar_national)
        first = len(out)
        out.append(patient)
        pid = _pid(index * 8 + k)
        newborn = mother is not None and perinatal.in_window(kid.birth, ref_date)
        for relationship, adult in adults:
            guardian = _related_person(child, relationship, adult, family, home, place)
            child.guardians.append(
                Guardian(guardian["id"], relationship, reference(urn, "RelatedPerson", guardian["id"]))
            )
            if newborn and relationship == "MTH":
                mother_links.append(len(out))
            out.append(guardian)
        if newborn:
            # The birth record's weight replaces the plain one, under the id the plain one would have had.
            weight_id = new_id(rng)
            births.newborns.append(
                perinatal.Newborn(child.id, pid, kid.birth, child.birth_weight_g, weight_id)
            )
            weight_slots[pid] = len(out)
            out.append({})
        else:
            out.append(clinical.birth_weight(child))
        out += clinical.growth(child, config)
        out += clinical.immunizations(child, config)
        screenings, concerns = clinical.development(child, config)
        out += screenings
        for concern in concerns:
            requester = child.childcare or child.health_centre
            out += social.referral(
                child,
                concern.on,
                "development",
                "developmental-delay",
                requester,
                local.hospital,
                reference(urn, "Observation", concern.observation_id)["reference"],
                urgent=concern.result == "delay",
            )
        out += social.social_needs(child, config)
        agreement = social.consent(child, config)
        if agreement is not None:
            out.append(agreement)
        child_cid = _cid_of(kid.identifiers)
        rows["PERSON"].append(
            tables.person_row(
                hospcode=hospcode,
                pid=pid,
                cid=child_cid,
                hn=kid.identifiers[-1]["value"],
                prefix_code=prefix_for(kid.gender, age_years)[0],
                given=kid.given[0],
                family=family[0],
                gender=kid.gender,
                birth=kid.birth,
                nation=_nation_code(patient),
                mother_cid=_cid_of(next((a.identifiers for r, a in adults if r == "MTH"), [])),
                father_cid=_cid_of(next((a.identifiers for r, a in adults if r == "FTH"), [])),
                updated=updated,
            )
        )
        rows["ADDRESS"].append(tables.address_row(hospcode, pid, child_cid, home, updated))
        care.append((pid, child_cid, first, len(out)))
        count += 1
    if births.newborns and mother is not None:
        slot = next(i for i, (r, _) in enumerate(adults) if r == "MTH")
        mother_pid = _pid(index * 8 + 4 + slot)
        mother_cid = _cid_of(mother.identifiers)
        mother_age = (ref_date - mother.birth).days // 365
        mother_row = tables.person_row(
            hospcode=hospcode,
            pid=mother_pid,
            cid=mother_cid,
            hn=None,
            prefix_code=prefix_for("female", mother_age, mother.married)[0],
            given=mother.given[0],
            family=family[0],
            gender="female",
            birth=mother.birth,
            nation=None if stateless else "099",
            married=mother.married,
            mobile=mother.phone,
            updated=updated,
        )
        mother_address = tables.address_row(hospcode, mother_pid, mother_cid, home, updated)
        rows["PERSON"].append(mother_row)
        rows["ADDRESS"].append(mother_address)
        earlier = sum(1 for day in set(birth_days) if not perinatal.in_window(day, ref_date))
        perinatal.add_pregnancies(
            births,
            birth_rng,
            hospcode=hospcode,
            hospital=local.hospital.hcode or hospcode,
            mother=perinatal.Mother(mother_pid, mother_cid, mother.birth),
            earlier_births=earlier,
            updated=updated,
            reference_date=ref_date,
        )
        extra, weights, mother_id = perinatal.to_fhir(
            births,
            birth_rng,
            mother_row=mother_row,
            mother_address=mother_address,
            person_rows=rows["PERSON"],
            children={n.pid: n.child_id for n in births.newborns},
            urn=urn,
        )
        for pid, at in weight_slots.items():
            out[at] = weights[pid]
        for resource in extra:
            if resource["id"] == mother_id:  # registered where her child is (the PID is that centre's)
                resource["generalPractitioner"] = [health_centre.reference]
                resource["managingOrganization"] = health_centre.reference
        link = {
            "url": canonical.structure_definition(canonical.EXT_PERSON_RECORD),
            "valueReference": reference(urn, "Patient", mother_id),
        }
        for at in mother_links:
            guardian = out[at]
            out[at] = {"resourceType": "RelatedPerson", "id": guardian["id"], "meta": guardian["meta"],
                       "extension": [link], **{k: v for k, v in guardian.items() if k not in ("id", "meta")}}
        out += extra
        for table, found in births.tables.items():
            rows.setdefault(table, []).extend(found)
    hcodes = {a.reference["reference"]: a.hcode for a in (health_centre, local.hospital) if a.hcode}
    for pid, cid, first, end in care if with_rows else ():
        for table, found in tables.care_rows(hospcode, pid, cid, out[first:end], hcodes, updated).items():
            rows.setdefault(table, []).extend(found)
    return Household(out, count, rows)


def _pid(person: int) -> str:
    """A person's PID at the health centre: a running number, 8 digits (the standard allows up to 15)."""
    return str(10_000_001 + person)


def _cid_of(identifiers: list[dict[str, Any]]) -> str | None:
    return next((i["value"] for i in identifiers if i.get("system") == canonical.CID_SYSTEM), None)


def _nation_code(patient: dict[str, Any]) -> str | None:
    for ext in patient.get("extension", []):
        if ext.get("url") == _NATIONALITY_EXT:
            return str(ext["extension"][0]["valueCodeableConcept"]["coding"][0]["code"])
    return None


def _nationality(code: str, display: str) -> dict[str, Any]:
    return {
        "url": _NATIONALITY_EXT,
        "extension": [
            {
                "url": "code",
                "valueCodeableConcept": {
                    "coding": [coding(canonical.code_system(canonical.CS_MOPH_NATION), code, display)]
                },
            }
        ],
    }


def _patient(
    child: Child, kid: _Person, family: tuple[str, str], home: dict[str, Any], myanmar_national: bool
) -> dict[str, Any]:
    age_years = child.age_days() // 365
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": child.id,
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_CHILD_PATIENT)]},
    }
    if not child.stateless:
        resource["extension"] = [_nationality("099", "ไทย")]
    elif myanmar_national:
        resource["extension"] = [_nationality("048", "พม่า")]
    resource.update(
        {
            "identifier": kid.identifiers,
            "active": True,
            "name": human_names(kid.given, family, prefix_for(kid.gender, age_years)),
            "gender": kid.gender,
            "birthDate": kid.birth.isoformat(),
            "address": [home],
            "generalPractitioner": [child.health_centre.reference],
            "managingOrganization": child.health_centre.reference,
        }
    )
    return resource


def _related_person(
    child: Child,
    relationship: str,
    adult: _Person,
    family: tuple[str, str],
    home: dict[str, Any],
    place: Place,
) -> dict[str, Any]:
    ours, display, _, _ = _RELATIONSHIPS[relationship]
    system = canonical.code_system(canonical.CS_GUARDIAN_RELATIONSHIP) if ours else _ROLE_CODE
    age_years = (child.reference_date - adult.birth).days // 365
    resource: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "id": new_id(child.rng),
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_GUARDIAN)]},
    }
    if adult.identifiers:
        resource["identifier"] = adult.identifiers
    resource.update(
        {
            "active": True,
            "patient": child.reference,
            "relationship": [{"coding": [coding(system, relationship, display)]}],
            "name": human_names(adult.given, family, prefix_for(adult.gender, age_years, adult.married)),
            "telecom": [{"system": "phone", "value": adult.phone, "use": "mobile"}],
            "gender": adult.gender,
            "birthDate": adult.birth.isoformat(),
            "address": [home],
        }
    )
    return resource
