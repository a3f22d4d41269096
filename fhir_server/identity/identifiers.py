"""National identifiers that name one child for certain: Thai CID, MOE G-code, passport, and a newborn's
temporary identifier (the mother's CID, the birth date and the birth order, which a 43-file export gives a
newborn without a CID: ``canonical.NEWBORN_ID_SYSTEM``).

Only these link records automatically. A 13-digit CID whose mod-11 check digit is wrong is no
identifier (one mistyped digit, or two swapped, always breaks the check), but it stays a weak signal
for matching. Local record numbers (HN, PID, student numbers) name a record at one agency, never a child.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir_server import canonical

CID = "cid"
GCODE = "gcode"
PASSPORT = "passport"
NEWBORN = "newborn"
# Stronger kinds decide first when a record's identifiers point at different children. A newborn's
# temporary identifier is the weakest: it stands in until the CID arrives, and a mistyped birth order
# would name the child's twin.
STRENGTH = {CID: 0, PASSPORT: 1, GCODE: 2, NEWBORN: 3}

_PASSPORT_SYSTEMS = re.compile(r"^https?://hl7\.org/fhir/sid/passport-([A-Za-z]{3})$")
_GCODE = re.compile(r"^G\d{12}$")
_PASSPORT_VALUE = re.compile(r"^[A-Z0-9]{5,15}$")
_SEPARATORS = re.compile(r"[\s\-.]")
_NEWBORN = re.compile(r"^(\d{13})-(\d{4})(\d{2})(\d{2})-(\d{1,2})$")


@dataclass(frozen=True, order=True)
class NationalId:
    kind: str
    system: str  # the canonical system (http:// for passports, as HL7's NamingSystem has it)
    value: str  # normalised: digits only for a CID, upper case for G-codes and passports

    @property
    def token(self) -> str:
        return f"{self.system}|{self.value}"

    def identifier(self) -> dict[str, Any]:
        return {"system": self.system, "value": self.value}


def cid_check_digit(first12: str) -> int:
    """The 13th digit of a Thai citizen ID: (11 - sum(d_i * (13 - i)) mod 11) mod 10."""
    total = sum(int(d) * (13 - i) for i, d in enumerate(first12))
    return (11 - total % 11) % 10


def _cid_digits(value: str) -> str | None:
    digits = _SEPARATORS.sub("", value)
    return digits if len(digits) == 13 and digits.isascii() and digits.isdigit() else None


def is_valid_cid(value: str) -> bool:
    digits = _cid_digits(value)
    return digits is not None and cid_check_digit(digits[:12]) == int(digits[12])


def classify(identifier: Any) -> tuple[NationalId | None, str | None]:
    """(a national identifier, or None; a 13-digit CID that fails its check, or None)."""
    if not isinstance(identifier, dict):
        return None, None
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(system, str) or not isinstance(value, str) or not value.strip():
        return None, None
    if system == canonical.CID_SYSTEM:
        digits = _cid_digits(value)
        if digits is None:
            return None, None
        if cid_check_digit(digits[:12]) != int(digits[12]):
            return None, digits
        return NationalId(CID, canonical.CID_SYSTEM, digits), None
    if system == canonical.GCODE_SYSTEM:
        code = _SEPARATORS.sub("", value).upper()
        return (NationalId(GCODE, system, code), None) if _GCODE.match(code) else (None, None)
    if system == canonical.NEWBORN_ID_SYSTEM:
        value = _newborn(value)
        return (NationalId(NEWBORN, system, value), None) if value else (None, None)
    passport = _PASSPORT_SYSTEMS.match(system)
    if passport or system == canonical.PASSPORT_UNKNOWN_COUNTRY_SYSTEM:
        number = _SEPARATORS.sub("", value).upper()
        if not _PASSPORT_VALUE.match(number):
            return None, None
        canonical_system = (
            f"http://hl7.org/fhir/sid/passport-{passport.group(1).upper()}" if passport else system
        )
        return NationalId(PASSPORT, canonical_system, number), None
    return None, None


def _newborn(value: str) -> str | None:
    """``<mother's CID>-<YYYYMMDD>-<order>`` normalised, when the CID is valid and the date a date."""
    import datetime

    match = _NEWBORN.match(value.strip())
    if match is None:
        return None
    mother, year, month, day, order = match.groups()
    if not is_valid_cid(mother) or int(order) < 1:
        return None
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return None
    return f"{mother}-{year}{month}{day}-{int(order)}"


def national_ids(resource: dict[str, Any]) -> list[NationalId]:
    """The resource's national identifiers, normalised and without repeats, strongest first."""
    found = {nid for i in _identifiers(resource) if (nid := classify(i)[0]) is not None}
    return sorted(found, key=lambda n: (STRENGTH[n.kind], n.value))


def broken_cids(resource: dict[str, Any]) -> list[str]:
    """13-digit values under the CID system whose check digit is wrong (weak signals only)."""
    return sorted({b for i in _identifiers(resource) if (b := classify(i)[1]) is not None})


def _identifiers(resource: dict[str, Any]) -> list[Any]:
    value = resource.get("identifier")
    return value if isinstance(value, list) else []
