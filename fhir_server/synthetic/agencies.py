"""The agencies around the children: district offices, health centres, hospitals, childcare centres,
BMA schools and social welfare offices, as TH Agency Organizations, fixed for a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from fhir_server import canonical
from fhir_server.synthetic.identifiers import hcode_identifier, new_id, school_code_identifier
from fhir_server.synthetic.places import Place, address, bangkok_districts, places_in

# Agency-type codes (canonical.CS_AGENCY_TYPE) with Thai and English displays.
AGENCY_TYPES: dict[str, tuple[str, str]] = {
    "health-centre": ("ศูนย์บริการสาธารณสุข", "Health centre"),
    "hospital": ("โรงพยาบาล", "Hospital"),
    "childcare-centre": ("ศูนย์พัฒนาเด็กเล็ก", "Childcare centre"),
    "school": ("โรงเรียน", "School"),
    "social-welfare": ("หน่วยงานพัฒนาสังคมและความมั่นคงของมนุษย์", "Social welfare office"),
    "district-office": ("สำนักงานเขต", "District office"),
}
_ZONES = 6  # hospitals and social welfare offices each serve a group of neighbouring districts


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    kind: str
    hcode: str | None = None

    @property
    def reference(self) -> dict[str, str]:
        return {"reference": f"Organization/{self.id}"}


@dataclass(slots=True)
class LocalAgencies:
    """The agencies a household in one district deals with."""

    district_office: Agency
    hospital: Agency
    social_welfare: Agency
    health_centres: list[Agency] = field(default_factory=list)
    childcare_centres: list[Agency] = field(default_factory=list)
    schools: list[Agency] = field(default_factory=list)


@dataclass(slots=True)
class AgencyDirectory:
    resources: list[dict[str, Any]]
    by_district: dict[str, LocalAgencies]


def _organization(
    rng: random.Random,
    kind: str,
    name_th: str,
    name_en: str,
    place: Place,
    identifiers: list[dict[str, Any]],
    part_of: Agency | None,
) -> dict[str, Any]:
    type_th, type_en = AGENCY_TYPES[kind]
    resource: dict[str, Any] = {
        "resourceType": "Organization",
        "id": new_id(rng),
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_AGENCY)]},
    }
    if identifiers:
        resource["identifier"] = identifiers
    resource.update(
        {
            "active": True,
            "type": [
                {
                    "coding": [
                        {
                            "system": canonical.code_system(canonical.CS_AGENCY_TYPE),
                            "code": kind,
                            "display": type_th,
                        }
                    ],
                    "text": type_en,
                }
            ],
            "name": name_th,
            "alias": [name_en],
            "telecom": [{"system": "phone", "value": f"02{rng.randrange(10_000_000):07d}", "use": "work"}],
            "address": [address(rng, place, use="work")],
        }
    )
    if part_of is not None:
        resource["partOf"] = part_of.reference
    return resource


def build_agencies(seed: int) -> AgencyDirectory:
    """All agencies of the population; the same seed always gives the same agencies and ids."""
    rng = random.Random(f"termtem-agencies:{seed}")
    resources: list[dict[str, Any]] = []
    by_district: dict[str, LocalAgencies] = {}
    districts = bangkok_districts()
    next_hcode = 13000 + rng.randrange(500)
    next_school = rng.randrange(1000)

    def add(kind: str, name_th: str, name_en: str, place: Place, part_of: Agency | None = None) -> Agency:
        nonlocal next_hcode, next_school
        identifiers: list[dict[str, Any]] = []
        hcode = None
        if kind in ("health-centre", "hospital"):
            hcode = f"{next_hcode:05d}"
            next_hcode += 1 + rng.randrange(7)
            identifiers.append(hcode_identifier(hcode))
        elif kind == "school":
            # 31 = BMA Education Department affiliation, 10 = Bangkok, then a serial.
            identifiers.append(school_code_identifier(f"3110{next_school:06d}"))
            next_school += 1 + rng.randrange(40)
        resource = _organization(rng, kind, name_th, name_en, place, identifiers, part_of)
        resources.append(resource)
        return Agency(resource["id"], kind, hcode)

    zone_size = -(-len(districts) // _ZONES)
    zone_agencies: list[tuple[Agency, Agency]] = []
    for zone in range(_ZONES):
        hub = places_in(districts[zone * zone_size])[0]
        short_th, short_en = hub.district_th.removeprefix("เขต"), hub.district_en
        hospital = add("hospital", f"โรงพยาบาล{short_th}", f"{short_en} Hospital", hub)
        welfare = add(
            "social-welfare",
            f"ศูนย์บริการสังคมกลุ่มเขต{short_th}",
            f"{short_en} Group Social Welfare Office",
            hub,
        )
        zone_agencies.append((hospital, welfare))

    centre_number = 1
    for index, district in enumerate(districts):
        places = places_in(district)
        first = places[0]
        short_th, short_en = first.district_th.removeprefix("เขต"), first.district_en
        office = add(
            "district-office",
            first.district_th.replace("เขต", "สำนักงานเขต", 1),
            f"{short_en} District Office",
            first,
        )
        hospital, welfare = zone_agencies[index // zone_size]
        local = LocalAgencies(office, hospital, welfare)
        for _ in range(1 + (rng.random() < 0.4)):
            place = places[rng.randrange(len(places))]
            local.health_centres.append(
                add(
                    "health-centre",
                    f"ศูนย์บริการสาธารณสุข {centre_number} {short_th}",
                    f"Public Health Centre {centre_number} {short_en}",
                    place,
                )
            )
            centre_number += 1
        for place in rng.sample(places, min(len(places), rng.randint(1, 3))):
            local.childcare_centres.append(
                add(
                    "childcare-centre",
                    f"ศูนย์พัฒนาเด็กเล็กชุมชน{place.subdistrict_th}",
                    f"{place.subdistrict_en} Community Childcare Centre",
                    place,
                    office,
                )
            )
        for place in rng.sample(places, min(len(places), rng.randint(1, 3))):
            local.schools.append(
                add(
                    "school",
                    f"โรงเรียนชุมชน{place.subdistrict_th} (สังกัดกรุงเทพมหานคร)",
                    f"{place.subdistrict_en} Community School (BMA)",
                    place,
                    office,
                )
            )
        by_district[district] = local
    return AgencyDirectory(resources, by_district)
