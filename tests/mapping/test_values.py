"""One test per real-world quirk of Thai legacy data."""

from __future__ import annotations

import pytest

from fhir_server.mapping import values
from fhir_server.mapping.encoding import decode, detect_encoding
from fhir_server.mapping.values import ValueRuleError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("25660315", "2023-03-15"),  # Buddhist Era year in the 43-file form
        ("20230315", "2023-03-15"),
        ("15/03/2566", "2023-03-15"),
        ("15/3/66", "2023-03-15"),  # short BE year
        ("๑๕/๐๓/๒๕๖๖", "2023-03-15"),  # Thai digits
        ("15 มีนาคม 2566", "2023-03-15"),  # Thai month name
        ("15 มี.ค. 66", "2023-03-15"),
        ("15 Mar 2023", "2023-03-15"),
        ("2566-03-15", "2023-03-15"),  # a Thai-locale spreadsheet date cell
        ("20230000", "2023-01-01"),  # unknown day and month are 1 January in the 43-file standard
    ],
)
def test_dates_in_every_written_form(raw: str, expected: str) -> None:
    assert values.date_rule(raw, {}) == expected


def test_impossible_and_future_dates_are_rejected_with_a_reason() -> None:
    with pytest.raises(ValueRuleError, match="not a real date"):
        values.date_rule("31/02/2565", {})
    with pytest.raises(ValueRuleError, match="in the future"):
        values.date_rule("01/01/2699", {"not_future": True})
    with pytest.raises(ValueRuleError, match="known form"):
        values.date_rule("เมื่อวาน", {})


def test_cid_with_dashes_spaces_and_thai_digits() -> None:
    assert values.cid("1-1037-00123-45-8", {}) == "1103700123458"
    assert values.cid("1 1037 00123 45 8", {}) == "1103700123458"
    assert values.cid("๑๑๐๓๗๐๐๑๒๓๔๕๘", {}) == "1103700123458"
    assert values.cid("0000000000000", {}) is None


def test_wrong_cid_check_digit_is_rejected_with_the_expected_digit() -> None:
    with pytest.raises(ValueRuleError, match=r"wrong check digit \(expected 8\)"):
        values.cid("1103700123459", {})
    with pytest.raises(ValueRuleError, match="13 digits"):
        values.cid("110370012345", {})


def test_prefix_is_split_from_the_name() -> None:
    name = values.thai_name("ด.ช.สมชาย  ใจดี", {})
    assert name == {"prefix": "ด.ช.", "prefix_code": "001", "gender": "male", "given": ["สมชาย"],
                    "family": "ใจดี", "text": "ด.ช.สมชาย ใจดี"}
    assert values.thai_name("เด็กหญิงมะลิ ศรีสุข", {})["prefix"] == "ด.ญ."
    assert values.thai_name("นางฟ้า สวยงาม", {})["prefix"] is None  # a given name that starts like นาง
    assert values.prefix_code("2", {}) == "002"


def test_unknown_codes_99_and_999_become_no_value() -> None:
    assert values.code("999", {"width": 3, "unknown": ["999"]}) is None
    assert values.code("99", {"width": 2, "unknown": ["99"]}) is None
    assert values.code("099", {"width": 3, "unknown": ["999"]}) == "099"


def test_leading_zeros_are_restored() -> None:
    assert values.code("10", {"width": 3}) == "010"  # BCG after a spreadsheet ate the zero
    assert values.code("10.0", {"width": 3}) == "010"
    assert values.code("D21", {"width": 3}) == "D21"
    assert values.phone("812345678", {}) == "0812345678"


def test_measurements_with_units_and_decimal_commas() -> None:
    assert values.decimal("12,5", {}) == 12.5
    assert values.decimal("41.2 กก.", {}) == 41.2
    assert values.decimal("๑๒.๕", {}) == 12.5
    with pytest.raises(ValueRuleError, match="outside"):
        values.decimal("305", {"min": 0.3, "max": 250})


def test_admin_area_codes_are_checked_against_dopa() -> None:
    assert values.admin_area("103301", {})["name"] == "คลองเตย"
    assert values.admin_area("1099", {}) is None  # 99 = unknown
    with pytest.raises(ValueRuleError, match="not a DOPA area code"):
        values.admin_area("109901", {})


def test_gcode_and_person_id() -> None:
    assert values.person_id("G-123456789012", {}) == {"kind": "gcode", "value": "G123456789012"}
    assert values.person_id("1103700123458", {}) == {"kind": "cid", "value": "1103700123458"}
    with pytest.raises(ValueRuleError):
        values.gcode("G12345", {})


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("ชื่อ|สกุล".encode("utf-8-sig"), "utf-8-sig"),
        ("ชื่อ|สกุล".encode(), "utf-8"),
        ("ชื่อ|สกุล".encode("cp874"), "cp874"),
    ],
)
def test_encodings_are_detected(data: bytes, encoding: str) -> None:
    assert detect_encoding(data) == encoding
    assert decode(data)[0].lstrip("\ufeff") == "ชื่อ|สกุล"
