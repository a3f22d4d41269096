"""Matching on hand-made Thai cases: prefixes, spellings, scripts, Buddhist-era dates, swaps, twins."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server import canonical
from fhir_server.identity import identifiers as ids
from fhir_server.identity import scoring
from fhir_server.identity.candidates import near_cids
from fhir_server.identity.features import features, parse_birth, strip_prefix

CID = canonical.CID_SYSTEM
DOPA = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
PREFIX = canonical.structure_definition(canonical.EXT_NAME_PREFIX)
AREA = canonical.code_system(canonical.CS_ADMIN_AREA)
MOTHER, FATHER = "3100600123450", "3100600123468"


def thai_name(text: str, given: str | None = None, family: str | None = None, **more: Any) -> dict[str, Any]:
    name: dict[str, Any] = {"text": text, **more}
    if given is not None:
        name["given"] = [given]
    if family is not None:
        name["family"] = family
    return name


def patient(
    *names: dict[str, Any],
    birth: str | None = "2021-03-15",
    gender: str | None = "female",
    cid: str | None = None,
    subdistrict: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": list(names)}
    if birth:
        body["birthDate"] = birth
    if gender:
        body["gender"] = gender
    if cid:
        body["identifier"] = [{"system": CID, "value": cid}]
    if subdistrict:
        parts = [("province", subdistrict[:2]), ("district", subdistrict[:4]), ("subdistrict", subdistrict)]
        body["address"] = [
            {
                "extension": [
                    {
                        "url": DOPA,
                        "extension": [
                            {"url": u, "valueCoding": {"system": AREA, "code": c}} for u, c in parts
                        ],
                    }
                ]
            }
        ]
    body.update(more)
    return body


def guardian(cid: str) -> dict[str, Any]:
    return {"resourceType": "RelatedPerson", "identifier": [{"system": CID, "value": cid}]}


def compare(a: dict[str, Any], b: dict[str, Any], ga: list[str] = (), gb: list[str] = ()) -> scoring.Match:
    return scoring.compare(features(a, [guardian(c) for c in ga]), features(b, [guardian(c) for c in gb]))


MALI = thai_name("ด.ญ.มะลิ ใจดี", "มะลิ", "ใจดี")


def test_cid_check_digit_decides_what_is_an_identifier() -> None:
    assert ids.is_valid_cid("1103700123458") and ids.is_valid_cid("1-1037-00123-45-8")
    assert not ids.is_valid_cid("1103700123457")  # one digit off: the check fails
    nid, broken = ids.classify({"system": CID, "value": "1103700123457"})
    assert nid is None and broken == "1103700123457"
    assert "1103700123458" in near_cids("1103700123457")
    assert "1103700123458" in near_cids("1103700124358")  # two neighbouring digits swapped


@pytest.mark.parametrize(
    ("written", "bare"),
    [
        ("ด.ช.กิตติ", "กิตติ"),
        ("ด.ญ. มะลิ", "มะลิ"),
        ("เด็กชายกิตติ", "กิตติ"),
        ("เด็กหญิงมะลิ", "มะลิ"),
        ("นายสมชาย", "สมชาย"),
        ("นาง มาลัย", "มาลัย"),
        ("นางสาวสมหญิง", "สมหญิง"),
        ("นางสาวิตรี", "สาวิตรี"),  # นาง + สาวิตรี: what follows a prefix must start a name
        ("Miss Mali", "Mali"),
        ("Mrinal", "Mrinal"),
    ],
)
def test_prefixes_are_stripped(written: str, bare: str) -> None:
    assert strip_prefix(written) == bare


def test_prefix_written_inside_the_given_name_or_only_as_a_dopa_code() -> None:
    by_code = thai_name(
        "สมชาย ใจดี",
        "นายสมชาย",
        "ใจดี",
        extension=[{"url": PREFIX, "valueCoding": {"code": "003"}}],
    )
    plain = thai_name("สมชาย ใจดี", "สมชาย", "ใจดี")
    result = compare(patient(by_code, gender="male"), patient(plain, gender="male"))
    assert "given name exact" in result.reasons and result.grade == scoring.PROBABLE
    with_dots = thai_name("ด.ช.กิตติ ศรีสุข", "ด.ช.กิตติ", "ศรีสุข")
    assert "given name exact" in compare(patient(with_dots), patient(thai_name("", "กิตติ", "ศรีสุข"))).reasons


def test_same_child_with_another_prefix_and_spelling_is_probable() -> None:
    a = patient(thai_name("ด.ญ.พิมพ์ชนก ศรีสุข", "พิมพ์ชนก", "ศรีสุข"), subdistrict="103301")
    b = patient(thai_name("เด็กหญิงพิมชนก ศรีสุก", "พิมชนก", "ศรีสุก"), subdistrict="103301")
    result = compare(a, b)
    assert "given name sound" in result.reasons and "family name sound" in result.reasons
    assert result.grade == scoring.PROBABLE and result.score > 0.9


def test_english_name_against_thai_name_through_romanisation() -> None:
    english = thai_name("Mali Jaidee", "Mali", "Jaidee", extension=[_lang("en")])
    result = compare(patient(MALI), patient(english))
    assert "given name close" in result.reasons
    assert result.grade in (scoring.PROBABLE, scoring.POSSIBLE)


def _lang(code: str) -> dict[str, Any]:
    return {"url": "http://hl7.org/fhir/StructureDefinition/language", "valueCode": code}


def test_buddhist_era_birth_dates_are_the_same_day() -> None:
    assert parse_birth("2564-03-15") == parse_birth("2021-03-15")
    result = compare(patient(MALI, birth="2564-03-15"), patient(MALI, birth="2021-03-15"))
    assert "same birth date" in result.reasons and result.grade == scoring.PROBABLE


def test_day_and_month_swapped() -> None:
    result = compare(patient(MALI, birth="2021-03-05"), patient(MALI, birth="2021-05-03"))
    assert "birth date with day and month swapped" in result.reasons
    assert result.grade == scoring.PROBABLE


def test_nicknames_add_evidence() -> None:
    nick = {"use": "nickname", "given": ["น้องมะลิ"]}
    with_nick = compare(patient(MALI, nick), patient(MALI, {"use": "nickname", "given": ["มะลิ"]}))
    assert "nickname same" in with_nick.reasons
    assert with_nick.evidence > compare(patient(MALI), patient(MALI)).evidence


def test_guardians_cid_and_dopa_address_are_evidence() -> None:
    near = compare(
        patient(MALI, subdistrict="103301"), patient(MALI, subdistrict="103301"), [MOTHER], [MOTHER]
    )
    far = compare(
        patient(MALI, subdistrict="103301"), patient(MALI, subdistrict="104101"), [MOTHER], [FATHER]
    )
    assert {"guardian CID shared", "same subdistrict (DOPA)"} <= set(near.reasons)
    assert {"guardian CID different", "district different"} <= set(far.reasons)
    assert near.score > far.score


def test_a_cid_one_typing_slip_away_is_strong_evidence() -> None:
    typo = "1103700123457"
    result = compare(patient(MALI, cid=typo), patient(MALI, cid="1103700123458"))
    assert "citizen ID one typing slip away" in result.reasons and result.grade == scoring.PROBABLE
    only_typo = compare(
        patient(thai_name("", "มะลิ"), birth=None, cid=typo), patient(MALI, cid="1103700123458")
    )
    assert only_typo.evidence > 0


def test_shared_identifier_is_certain_and_different_cids_are_certainly_not() -> None:
    same = compare(
        patient(MALI, cid="1103700123458"), patient(thai_name("Mali", "Mali"), cid="1103700123458")
    )
    assert same.grade == scoring.CERTAIN and same.score == 1.0
    other = compare(patient(MALI, cid="1103700123458"), patient(MALI, cid="1103700123466"))
    assert other.grade == scoring.CERTAINLY_NOT


def test_twins_are_different_children() -> None:
    """Same birth date, guardians, family name and address; different given names (and CIDs)."""
    home = "103301"
    first = patient(thai_name("ด.ญ.มะลิ ใจดี", "มะลิ", "ใจดี"), subdistrict=home)
    second = patient(thai_name("ด.ญ.มาลัย ใจดี", "มาลัย", "ใจดี"), subdistrict=home)
    twins = compare(first, second, [MOTHER, FATHER], [MOTHER, FATHER])
    assert twins.grade not in (scoring.CERTAIN, scoring.PROBABLE), twins
    brother = patient(thai_name("ด.ช.กิตติ ใจดี", "กิตติ", "ใจดี"), gender="male", subdistrict=home)
    assert compare(first, brother, [MOTHER], [MOTHER]).grade not in (scoring.CERTAIN, scoring.PROBABLE)
    with_cids = compare(
        {**first, "identifier": [{"system": CID, "value": "1103700123458"}]},
        {**second, "identifier": [{"system": CID, "value": "1103700123466"}]},
    )
    assert with_cids.grade == scoring.CERTAINLY_NOT
