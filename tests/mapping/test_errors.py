"""Bad rows are reported (file, row, field, reason) while the good rows of the same file still map."""

from __future__ import annotations

from tests.mapping.golden import MAPPINGS, run


def _reasons(result: dict) -> list[tuple[int, str, str]]:
    return [(e["row"], e["field"], e["reason"]) for e in result["errors"]]


def test_mixed_sheet_good_rows_map_and_each_bad_row_is_reported() -> None:
    result = run("bma-childcare-dspm", MAPPINGS / "bma-childcare-dspm/samples/dspm-mixed-errors.csv")
    patients = [e for e in result["bundles"][0]["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 1
    assert _reasons(result) == [
        (3, "เลขประจำตัวประชาชน", "CID 1103700123459 has a wrong check digit (expected 8)"),
        (4, "วันเกิด", "'31/02/2565' is not a real date"),
        (5, "เพศ", "sex is missing and the name has no prefix that implies it"),
        (6, "ช่วงอายุ (เดือน)", "'24' is not in the age_band code list"),
        (6, "FM", "'ดีมาก' is not in the result code list"),
        (7, "PS", "required value is missing"),
    ]


def test_43file_rows_of_rejected_or_unknown_persons_are_rejected_too() -> None:
    result = run("moph43", MAPPINGS / "moph43/samples/export-with-errors")
    by_table = {(e["table"], e["row"]): e["reason"] for e in result["errors"]}
    assert by_table[("PERSON", 3)].startswith("CID 1103700777775 has a wrong check digit")
    assert by_table[("PERSON", 4)] == "2099-01-01 is in the future"
    assert by_table[("NUTRITION", 3)] == "no accepted PERSON record for HOSPCODE/PID 99903/2"
    assert by_table[("NUTRITION", 4)] == "305 is outside 0.3-250"
    assert by_table[("EPI", 3)] == "no accepted PERSON record for HOSPCODE/PID 99903/9"
    assert by_table[("EPI", 4)] == "row has 4 fields, the header has 11"
    immunizations = [e["resource"] for e in result["bundles"][0]["entry"]
                     if e["resource"]["resourceType"] == "Immunization"]
    assert [i["vaccineCode"]["coding"][0]["code"] for i in immunizations] == ["081"]


def test_a_person_rejected_by_validation_also_rejects_its_visit_rows() -> None:
    from fhir_server.mapping import RowError, map_files

    def refuse_mother(entries: list) -> list:
        patient = entries[0]["resource"]
        if patient["resourceType"] == "Patient" and patient["name"][0]["given"] == ["สมศรี"]:
            return [("Patient.name", "refused for the test")]
        return []

    out = list(map_files("moph43", [MAPPINGS / "moph43/samples/export-utf8"], validate=refuse_mother))
    errors = [(e.table, e.reason) for e in out if isinstance(e, RowError)]
    assert errors == [("PERSON", "refused for the test"),
                      ("CHRONIC", "no accepted PERSON record for HOSPCODE/PID 99901/1003"),
                      ("DRUGALLERGY", "no accepted PERSON record for HOSPCODE/PID 99901/1003")]
