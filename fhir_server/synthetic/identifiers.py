"""Resource ids and Thai identifiers (citizen ID with its mod-11 check digit, MOE G-code, facility codes)."""

from __future__ import annotations

import random
from typing import Any

from fhir_server import canonical


def new_id(rng: random.Random) -> str:
    """A random-looking but seed-determined UUID (version 4 layout), used as resource id and urn:uuid."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def cid_check_digit(first12: str) -> int:
    """Check digit of a Thai citizen ID: (11 - sum(d_i * (14 - i)) mod 11) mod 10."""
    total = sum(int(d) * (13 - i) for i, d in enumerate(first12))
    return (11 - total % 11) % 10


def is_valid_cid(value: str) -> bool:
    return len(value) == 13 and value.isdigit() and cid_check_digit(value[:12]) == int(value[12])


def make_cid(rng: random.Random, category: str, office: str) -> str:
    """A valid 13-digit CID: person category digit, 4-digit registration office, 7 random digits, check."""
    body = f"{category}{office}{rng.randrange(10_000_000):07d}"
    return body + str(cid_check_digit(body))


def make_gcode(rng: random.Random) -> str:
    """A MOE G-code: "G" followed by 12 digits (students with no civil-registration number)."""
    return f"G{rng.randrange(10**12):012d}"


def _type(code: str, display: str) -> dict[str, Any]:
    return {
        "coding": [
            {"system": canonical.code_system(canonical.CS_IDENTIFIER_TYPE), "code": code, "display": display}
        ]
    }


def cid_identifier(value: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": _type("cid", "เลขประจำตัวประชาชน"),
        "system": canonical.CID_SYSTEM,
        "value": value,
    }


def gcode_identifier(value: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": _type("gcode", "รหัส G (นักเรียนที่ไม่มีเลขประจำตัวประชาชน)"),
        "system": canonical.GCODE_SYSTEM,
        "value": value,
    }


def hn_identifier(hcode: str, value: str) -> dict[str, Any]:
    return {
        "use": "usual",
        "type": _type("hn", "เลขประจำตัวผู้ป่วย (HN)"),
        "system": canonical.local_record_system(hcode, "HN"),
        "value": value,
    }


def hcode_identifier(value: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": _type("hcode", "รหัสสถานพยาบาล"),
        "system": canonical.HCODE_SYSTEM,
        "value": value,
    }


def school_code_identifier(value: str) -> dict[str, Any]:
    return {
        "use": "official",
        "type": _type("school-code", "รหัสโรงเรียน"),
        "system": canonical.SCHOOL_CODE_SYSTEM,
        "value": value,
    }
