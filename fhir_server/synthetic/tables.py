"""The generated population as the MOPH 43-file tables its health centres would export.

PERSON and ADDRESS rows for the children and the mothers with a birth record, the perinatal tables
(PRENATAL, ANC, LABOR, NEWBORN, NEWBORNCARE, POSTNATAL: ``perinatal``), and NUTRITION and EPI rows
from the children's growth measurements and immunisations. Columns and their order are the standard's,
read from the moph43 format's ``schema.json``, so ``termtem import --format moph43`` reads the folder.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from fhir_server import canonical
from fhir_server.mapping import load_format

TABLES = (
    "PERSON",
    "ADDRESS",
    "NUTRITION",
    "EPI",
    "PRENATAL",
    "ANC",
    "LABOR",
    "NEWBORN",
    "NEWBORNCARE",
    "POSTNATAL",
)
_SEX = {"male": "1", "female": "2"}
_LOINC = "http://loinc.org"
_GROWTH = {"29463-7": "WEIGHT", "8306-3": "HEIGHT", "8302-2": "HEIGHT", "9843-4": "HEADCIRCUM"}


@cache
def columns(table: str) -> tuple[str, ...]:
    """The table's columns in the standard's order."""
    schema = load_format("moph43").schema["$defs"][table]
    return tuple(schema["properties"])


def line(table: str, row: dict[str, str]) -> str:
    """One pipe-delimited line of ``table`` (columns the row does not have are empty)."""
    return "|".join(row.get(column, "") for column in columns(table)) + "\n"


def updated_stamp(reference_date: date) -> str:
    """D_UPDATE of every row: the export is taken on the reference date."""
    return f"{reference_date:%Y%m%d}090000"


def person_row(
    *,
    hospcode: str,
    pid: str,
    cid: str | None,
    hn: str | None,
    prefix_code: str,
    given: str,
    family: str,
    gender: str,
    birth: date,
    nation: str | None,
    mother_cid: str | None = None,
    father_cid: str | None = None,
    married: bool | None = None,
    mobile: str | None = None,
    updated: str,
) -> dict[str, str]:
    row = {
        "HOSPCODE": hospcode,
        "CID": cid or "",
        "PID": pid,
        "HID": pid,
        "PRENAME": prefix_code,
        "NAME": given,
        "LNAME": family,
        "HN": hn or "",
        "SEX": _SEX[gender],
        "BIRTH": f"{birth:%Y%m%d}",
        "MSTATUS": "" if married is None else ("2" if married else "1"),
        "NATION": nation or "",
        "FATHER": father_cid or "",
        "MOTHER": mother_cid or "",
        "TYPEAREA": "1",
        "D_UPDATE": updated,
        "MOBILE": mobile or "",
    }
    return row


def address_row(
    hospcode: str, pid: str, cid: str | None, home: dict[str, Any], updated: str
) -> dict[str, str]:
    """The registered address (ADDRESSTYPE 1) with its DOPA codes, from the generated FHIR Address."""
    codes = {
        part["url"]: part["valueCoding"]["code"]
        for ext in home.get("extension", [])
        for part in ext.get("extension", [])
    }
    subdistrict = codes.get("subdistrict", "")
    number, _, soi = home["line"][0].partition(" ซอย ")
    return {
        "HOSPCODE": hospcode,
        "PID": pid,
        "ADDRESSTYPE": "1",
        "HOUSETYPE": "1",
        "HOUSENO": number,
        "SOIMAIN": soi,
        "VILLAGE": "00",
        "TAMBON": subdistrict[4:6],
        "AMPUR": subdistrict[2:4],
        "CHANGWAT": subdistrict[:2],
        "D_UPDATE": updated,
        "CID": cid or "",
    }


def care_rows(
    hospcode: str,
    pid: str,
    cid: str | None,
    resources: list[dict[str, Any]],
    hcodes: dict[str, str],
    updated: str,
) -> dict[str, list[dict[str, str]]]:
    """NUTRITION (one row per visit day: weight, height, head circumference) and EPI rows of one child
    from its generated Observations and Immunizations. ``hcodes`` maps an agency reference to its HCODE
    (visits at a school have no HCODE: the place is left empty)."""
    visits: dict[str, dict[str, str]] = {}
    epi: list[dict[str, str]] = []
    for resource in resources:
        kind = resource["resourceType"]
        if kind == "Observation" and canonical.structure_definition(canonical.PROFILE_GROWTH) in resource.get(
            "meta", {}
        ).get("profile", []):
            column = next(
                (_GROWTH[c["code"]] for c in resource["code"]["coding"] if c.get("system") == _LOINC
                 and c.get("code") in _GROWTH),
                None,
            )
            if column is None:
                continue
            day = resource["effectiveDateTime"][:10].replace("-", "")
            place = hcodes.get(resource["performer"][0]["reference"], "")
            visit = visits.setdefault(
                day,
                {
                    "HOSPCODE": hospcode,
                    "PID": pid,
                    "SEQ": _visit(pid, day),
                    "DATE_SERV": day,
                    "NUTRITIONPLACE": place,
                    "D_UPDATE": updated,
                    "CID": cid or "",
                },
            )
            visit[column] = f"{resource['valueQuantity']['value']:g}"
        elif kind == "Immunization":
            moph = next(
                c["code"]
                for c in resource["vaccineCode"]["coding"]
                if c["system"] == canonical.code_system(canonical.CS_MOPH_VACCINE)
            )
            day = resource["occurrenceDateTime"][:10].replace("-", "")
            epi.append(
                {
                    "HOSPCODE": hospcode,
                    "PID": pid,
                    "SEQ": _visit(pid, day),
                    "DATE_SERV": day,
                    "VACCINETYPE": moph,
                    "VACCINEPLACE": hcodes.get(resource["performer"][0]["actor"]["reference"], ""),
                    "D_UPDATE": updated,
                    "CID": cid or "",
                }
            )
    return {"NUTRITION": list(visits.values()), "EPI": epi}


def _visit(pid: str, day: str) -> str:
    """SEQ, the visit number (at most 16 characters): one per person and day, shared by its services."""
    return f"{pid}{day[2:]}"
