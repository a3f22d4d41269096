"""The same child from different agencies is one Patient; re-imports produce identical conditional writes."""

from __future__ import annotations

from typing import Any

from tests.mapping.golden import MAPPINGS, run


def _entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in result["bundles"] for e in b["entry"]]


def _patient_for(entries: list[dict[str, Any]], cid: str) -> dict[str, Any]:
    return next(e for e in entries if e["resource"]["resourceType"] == "Patient"
                and any(i["value"] == cid for i in e["resource"]["identifier"]))


def test_same_cid_from_moph43_and_childcare_sheet_is_one_patient() -> None:
    moph = _entries(run("moph43", MAPPINGS / "moph43/samples/export-utf8"))
    care = _entries(run("bma-childcare-dspm", MAPPINGS / "bma-childcare-dspm/samples/dspm-2567.xlsx"))
    case = _entries(run("msdhs-case", MAPPINGS / "msdhs-case/samples/cases-2567-05.ndjson"))
    a, b, c = (_patient_for(x, "1103700123458") for x in (moph, care, case))
    assert a["fullUrl"] == b["fullUrl"] == c["fullUrl"]
    cid_query = "identifier=https://terms.sil-th.org/id/th-cid|1103700123458"
    # The 43-file Patient is found by its CID or its PID (a newborn's CID arrives after its PID).
    assert a["request"]["url"] == f"Patient?{cid_query},https://terms.sil-th.org/hcode/5/99901/PID|1001"
    assert b["request"]["ifNoneExist"] == cid_query == c["request"]["ifNoneExist"]
    # The mother named by CID in PERSON and the mother named on the sheet are one RelatedPerson.
    mothers = [e for x in (moph, care) for e in x if e["resource"]["resourceType"] == "RelatedPerson"
               and e["resource"]["patient"]["reference"] == a["fullUrl"]
               and e["resource"]["relationship"][0]["coding"][0]["code"] == "MTH"]
    assert len(mothers) == 2 and mothers[0]["fullUrl"] == mothers[1]["fullUrl"]


def test_same_gcode_is_one_patient() -> None:
    csv = _entries(run("bma-school-health", MAPPINGS / "bma-school-health/samples/roster-2567.csv"))
    xlsx = _entries(run("bma-school-health", MAPPINGS / "bma-school-health/samples/roster-2567.xlsx"))
    g1, g2 = (_patient_for(x, "G123456789012") for x in (csv, xlsx))
    assert g1["fullUrl"] == g2["fullUrl"]
    assert g1["request"]["ifNoneExist"] == "identifier=https://termtem.org/fhir/id/moe-gcode|G123456789012"


def test_parents_named_by_cid_become_guardians_linked_to_the_child() -> None:
    entries = _entries(run("moph43", MAPPINGS / "moph43/samples/export-utf8"))
    child = _patient_for(entries, "1103700123458")
    guardians = {e["fullUrl"]: e["resource"] for e in entries
                 if e["resource"]["resourceType"] == "RelatedPerson"
                 and e["resource"]["patient"]["reference"] == child["fullUrl"]}
    cids = sorted(i["value"] for g in guardians.values() for i in g["identifier"] if "th-cid" in i["system"])
    assert cids == ["3100600543211", "3800100456780"]
    assert {link["other"]["reference"] for link in child["resource"]["link"]} == set(guardians)
    mother = next(g for g in guardians.values() if g["relationship"][0]["coding"][0]["code"] == "MTH")
    assert mother["name"][0]["given"] == ["สมศรี"]  # the mother's own PERSON row gives her name


def test_every_write_is_conditional_on_a_business_identifier() -> None:
    for sample in ["moph43/samples/export-utf8", "bma-school-health/samples/roster-2567.csv",
                   "msdhs-case/samples/case-000123.json", "bma-childcare-dspm/samples/dspm-2567.xlsx"]:
        for entry in _entries(run(sample.split("/")[0], MAPPINGS / sample)):
            request, resource = entry["request"], entry["resource"]
            query = request.get("ifNoneExist") or request["url"].partition("?")[2]
            assert request["method"] in ("POST", "PUT") and query.startswith("identifier=")
            from urllib.parse import unquote

            for token in query.removeprefix("identifier=").split(","):  # any of them (43-file Patients)
                system, _, value = token.partition("|")
                assert {"system": unquote(system), "value": unquote(value)} in [
                    {"system": i["system"], "value": i["value"]} for i in resource["identifier"]]
            assert "id" not in resource


def test_two_runs_give_identical_bundles() -> None:
    for sample in ["moph43/samples/export-tis620.zip", "msdhs-case/samples/cases-2567-05.ndjson"]:
        fmt = sample.split("/")[0]
        assert run(fmt, MAPPINGS / sample) == run(fmt, MAPPINGS / sample)


def test_a_child_screened_twice_in_one_batch_has_one_patient_entry() -> None:
    sheet = MAPPINGS / "bma-childcare-dspm/samples/dspm-2567-utf8-bom.csv"
    result = run("bma-childcare-dspm", sheet, sheet)
    urls = [e["fullUrl"] for e in _entries(result)]
    assert len(urls) == len(set(urls))
