"""Thai address names as people type them: with or without ``เขต``/``แขวง`` (``อำเภอ``/``ตำบล``).

Bangkok's DOPA names carry the prefix for districts (``เขตลาดกระบัง``) but not for subdistricts, and
people write either form, so an address is indexed under every form of its area names. The DOPA codes
in the address's ``th-dopa-address-code`` extension are the key: the names of those areas (Thai with
and without prefix, English) are indexed even when the address text spells them otherwise or not at all.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import geothai

from fhir_server import canonical

_PREFIXES = ("เขต", "แขวง", "อำเภอ", "ตำบล", "จังหวัด", "อ.", "ต.", "จ.")
_DOPA_EXTENSION = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
_BANGKOK = "10"
# Address elements holding an area name, and the prefixes that name may be written with.
_FIELD_PREFIXES = {"city": ("แขวง", "ตำบล"), "district": ("เขต", "อำเภอ"), "state": ("จังหวัด",)}


def strip_prefix(text: str) -> str | None:
    """``text`` without a leading administrative prefix, or None when it has none."""
    stripped = text.strip()
    for prefix in _PREFIXES:
        if stripped.startswith(prefix) and len(stripped) > len(prefix):
            return stripped[len(prefix) :].strip()
    return None


@lru_cache(maxsize=16384)
def area_names(code: str) -> tuple[str, ...]:
    """Every way to write the area with this DOPA code (district: 4 digits; subdistrict: 6)."""
    if len(code) == 4:
        area: Any = geothai.district(code)
        prefix = "เขต" if code.startswith(_BANGKOK) else "อำเภอ"
    elif len(code) == 6:
        area = geothai.subdistrict(code)
        prefix = "แขวง" if code.startswith(_BANGKOK) else "ตำบล"
    else:
        return ()
    if area is None:
        return ()
    bare = strip_prefix(area.name_th) or area.name_th
    return tuple(dict.fromkeys((area.name_th, bare, prefix + bare, area.name_en)))


def address_variants(address: dict[str, Any]) -> list[str]:
    """Extra strings to index for an Address: prefix-less forms and the names of its DOPA areas."""
    out: list[str] = []
    for key, prefixes in _FIELD_PREFIXES.items():
        value = address.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        bare = strip_prefix(value) or value.strip()
        out.append(bare)
        out.extend(prefix + bare for prefix in prefixes)
    for extension in address.get("extension", []) or []:
        if not isinstance(extension, dict) or extension.get("url") != _DOPA_EXTENSION:
            continue
        for part in extension.get("extension", []) or []:
            coding = part.get("valueCoding") if isinstance(part, dict) else None
            code = coding.get("code") if isinstance(coding, dict) else None
            if isinstance(code, str) and code.isdigit():
                out.extend(area_names(code))
    return out
