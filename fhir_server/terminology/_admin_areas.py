"""The DOPA administrative-area CodeSystem, built from the ``geothai`` package at start-up.

Provinces (2 digits) nest districts (4) which nest subdistricts (6), so ``$subsumes`` and is-a
filters follow the real hierarchy. Nothing is typed by hand: names and codes come from geothai.
"""

from __future__ import annotations

from typing import Any

import geothai

from fhir_server import canonical

_LEVEL_PROPERTY = {
    "code": "level",
    "description": "province (จังหวัด), district (อำเภอ/เขต) or subdistrict (ตำบล/แขวง)",
    "type": "code",
}
_POSTAL_PROPERTY = {"code": "postalCode", "description": "Postal code(s) of a subdistrict", "type": "string"}


def _concept(code: str, name_th: str, name_en: str, level: str) -> dict[str, Any]:
    return {
        "code": code,
        "display": name_th,
        "designation": [{"language": "en", "value": name_en}],
        "property": [{"code": "level", "valueCode": level}],
    }


def build() -> dict[str, Any]:
    """The CodeSystem resource (about 8,400 nested concepts)."""
    provinces: list[dict[str, Any]] = []
    total = 0
    for province in geothai.provinces():
        p = _concept(province.code, province.name_th, province.name_en, "province")
        districts = []
        for district in geothai.districts(province.code):
            d = _concept(district.code, district.name_th, district.name_en, "district")
            subs = []
            for sub in geothai.subdistricts(district.code):
                s = _concept(sub.code, sub.name_th, sub.name_en, "subdistrict")
                s["property"] += [{"code": "postalCode", "valueString": pc} for pc in sub.postal_codes]
                subs.append(s)
            d["concept"] = subs
            districts.append(d)
            total += 1 + len(subs)
        p["concept"] = districts
        provinces.append(p)
        total += 1
    return {
        "resourceType": "CodeSystem",
        "id": canonical.CS_ADMIN_AREA,
        "url": canonical.code_system(canonical.CS_ADMIN_AREA),
        "version": geothai.DATA_VERSION,
        "name": "ThAdminArea",
        "title": "Thai administrative areas (DOPA codes)",
        "status": "active",
        "experimental": False,
        "publisher": "Termtem project (data: the geothai package)",
        "description": "Provinces, districts (amphoe/khet) and subdistricts (tambon/khwaeng) of Thailand "
        "with their DOPA codes, Thai displays and English designations. Generated at start-up from the "
        f"geothai package, data version {geothai.DATA_VERSION}.",
        "language": "th",
        "caseSensitive": True,
        "hierarchyMeaning": "part-of",
        "valueSet": canonical.value_set(canonical.VS_ADMIN_AREA),
        "content": "complete",
        "count": total,
        "property": [_LEVEL_PROPERTY, _POSTAL_PROPERTY],
        "concept": provinces,
    }
