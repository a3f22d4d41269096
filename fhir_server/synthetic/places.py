"""Bangkok's real districts (khet) and subdistricts (khwaeng) from ``geothai``, as FHIR Addresses."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import geothai

from fhir_server import canonical

BANGKOK = "10"


@dataclass(frozen=True, slots=True)
class Place:
    """One Bangkok subdistrict with its district, which is what an address and an agency need."""

    district_code: str
    district_th: str
    district_en: str
    subdistrict_code: str
    subdistrict_th: str
    subdistrict_en: str
    postal_code: str


@lru_cache(maxsize=1)
def bangkok_places() -> tuple[Place, ...]:
    """Every Bangkok subdistrict, in DOPA code order (so choices by index are stable)."""
    places = []
    for district in sorted(geothai.districts(BANGKOK), key=lambda d: d.code):
        for sub in sorted(geothai.subdistricts(district.code), key=lambda s: s.code):
            places.append(
                Place(
                    district.code,
                    district.name_th,
                    district.name_en,
                    sub.code,
                    sub.name_th,
                    sub.name_en,
                    sub.postal_codes[0],
                )
            )
    return tuple(places)


@lru_cache(maxsize=1)
def bangkok_districts() -> tuple[str, ...]:
    return tuple(sorted({p.district_code for p in bangkok_places()}))


@lru_cache(maxsize=64)
def places_in(district_code: str) -> tuple[Place, ...]:
    return tuple(p for p in bangkok_places() if p.district_code == district_code)


@lru_cache(maxsize=1)
def _province_th() -> str:
    province = geothai.province(BANGKOK)
    assert province is not None
    return province.name_th


def _area(part: str, code: str, display: str) -> dict[str, Any]:
    return {
        "url": part,
        "valueCoding": {
            "system": canonical.code_system(canonical.CS_ADMIN_AREA),
            "code": code,
            "display": display,
        },
    }


def address(rng: random.Random, place: Place, use: str = "home") -> dict[str, Any]:
    """A street address in the place, with the DOPA province/district/subdistrict codes as an extension."""
    number = (
        f"{rng.randint(1, 999)}/{rng.randint(1, 99)}" if rng.random() < 0.6 else str(rng.randint(1, 1999))
    )
    line = f"{number} ซอย {rng.randint(1, 120)}" if rng.random() < 0.7 else number
    province_th = _province_th()
    return {
        "extension": [
            {
                "url": canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE),
                "extension": [
                    _area("province", BANGKOK, province_th),
                    _area("district", place.district_code, place.district_th),
                    _area("subdistrict", place.subdistrict_code, place.subdistrict_th),
                ],
            }
        ],
        "use": use,
        "type": "physical",
        "text": f"{line} แขวง{place.subdistrict_th} {place.district_th} {province_th} {place.postal_code}",
        "line": [line],
        "city": f"แขวง{place.subdistrict_th}",
        "district": place.district_th,
        "state": province_th,
        "postalCode": place.postal_code,
        "country": "TH",
    }
