"""Thai names with RTGS romanisation, and the DOPA name prefix that fits a person's sex and age."""

from __future__ import annotations

import random
from typing import Any

from fhir_server import canonical

_LANGUAGE_EXT = "http://hl7.org/fhir/StructureDefinition/language"

# (Thai, RTGS romanisation). Common given names; no real person is meant.
_BOYS = [
    ("สมชาย", "Somchai"),
    ("ธนากร", "Thanakon"),
    ("ภูมิ", "Phum"),
    ("กิตติพงษ์", "Kittiphong"),
    ("ณัฐวุฒิ", "Natthawut"),
    ("พีรพัฒน์", "Phiraphat"),
    ("ธีรเดช", "Thiradet"),
    ("วรวุฒิ", "Worawut"),
    ("ศุภกร", "Suphakon"),
    ("อนุชา", "Anucha"),
    ("ชยพล", "Chayaphon"),
    ("ปกรณ์", "Pakon"),
    ("ภาณุ", "Phanu"),
    ("สิทธิชัย", "Sitthichai"),
    ("ธนภัทร", "Thanaphat"),
    ("กฤษดา", "Kritsada"),
    ("จิรายุ", "Chirayu"),
    ("ณัฐพล", "Natthaphon"),
    ("ปิยะ", "Piya"),
    ("พงศกร", "Phongsakon"),
    ("วีรภัทร", "Wiraphat"),
    ("อภิชาติ", "Aphichat"),
    ("เกียรติศักดิ์", "Kiattisak"),
    ("ชัยวัฒน์", "Chaiwat"),
    ("ธวัชชัย", "Thawatchai"),
    ("นพดล", "Nopphadon"),
    ("ประเสริฐ", "Prasoet"),
    ("สุริยา", "Suriya"),
    ("อรรถพล", "Atthaphon"),
    ("ตะวัน", "Tawan"),
    ("ภูผา", "Phupha"),
    ("ศักดิ์ชัย", "Sakchai"),
    ("มานพ", "Manop"),
    ("สมศักดิ์", "Somsak"),
    ("วิชัย", "Wichai"),
    ("กันต์", "Kan"),
]
_GIRLS = [
    ("สมหญิง", "Somying"),
    ("ปิยะนุช", "Piyanut"),
    ("ณัฐธิดา", "Natthida"),
    ("กมลชนก", "Kamonchanok"),
    ("พิมพ์ชนก", "Phimchanok"),
    ("ศิริพร", "Siriphon"),
    ("วรรณา", "Wanna"),
    ("อรอุมา", "Onuma"),
    ("ชนิดา", "Chanida"),
    ("ธิดารัตน์", "Thidarat"),
    ("จิราพร", "Chiraphon"),
    ("สุภาพร", "Suphaphon"),
    ("ปวีณา", "Pawina"),
    ("กัญญารัตน์", "Kanyarat"),
    ("รัตนา", "Rattana"),
    ("มณีรัตน์", "Manirat"),
    ("อัญชลี", "Anchali"),
    ("ขวัญใจ", "Khwanchai"),
    ("เบญจมาศ", "Benchamat"),
    ("ลลิตา", "Lalita"),
    ("ศศิธร", "Sasithon"),
    ("วิไลวรรณ", "Wilaiwan"),
    ("ปาริชาติ", "Parichat"),
    ("นันทนา", "Nanthana"),
    ("กานดา", "Kanda"),
    ("ชุติมา", "Chutima"),
    ("ดารุณี", "Daruni"),
    ("ธัญญา", "Thanya"),
    ("ภัทรา", "Phatthra"),
    ("สุนิสา", "Sunisa"),
    ("อารีรัตน์", "Arirat"),
    ("พิชญา", "Phitchaya"),
    ("ณิชา", "Nicha"),
    ("น้ำฝน", "Namfon"),
    ("มาลัย", "Malai"),
    ("บุษบา", "Butsaba"),
]
_FAMILY = [
    ("แสงทอง", "Saengthong"),
    ("ศรีสุข", "Sisuk"),
    ("บุญมา", "Bunma"),
    ("ใจดี", "Chaidi"),
    ("สุขสวัสดิ์", "Suksawat"),
    ("วงศ์สวัสดิ์", "Wongsawat"),
    ("ทองดี", "Thongdi"),
    ("มีสุข", "Misuk"),
    ("พรหมมา", "Phromma"),
    ("แก้วมณี", "Kaeomani"),
    ("ศรีวงศ์", "Siwong"),
    ("รัตนพันธ์", "Rattanaphan"),
    ("จันทร์เพ็ญ", "Chanphen"),
    ("สมบูรณ์", "Sombun"),
    ("เพชรรัตน์", "Phetcharat"),
    ("กิตติวงศ์", "Kittiwong"),
    ("อินทร์แก้ว", "Inkaeo"),
    ("ทองคำ", "Thongkham"),
    ("บุญเรือง", "Bunrueang"),
    ("สายทอง", "Saithong"),
    ("ชัยมงคล", "Chaimongkhon"),
    ("พงษ์พันธ์", "Phongphan"),
    ("วิเศษสุข", "Wisetsuk"),
    ("เจริญผล", "Charoenphon"),
    ("นาคสุข", "Naksuk"),
    ("มั่นคง", "Mankhong"),
    ("รุ่งเรือง", "Rungrueang"),
    ("สุวรรณศรี", "Suwannasi"),
    ("แสงอรุณ", "Saengarun"),
    ("ปัญญาดี", "Panyadi"),
    ("โพธิ์ทอง", "Phothong"),
    ("สิทธิโชค", "Sitthichok"),
    ("อ่อนศรี", "Onsi"),
    ("พูลสวัสดิ์", "Phunsawat"),
    ("คงเจริญ", "Khongcharoen"),
    ("หอมจันทร์", "Homchan"),
    ("แซ่ตั้ง", "Sae Tang"),
    ("แซ่ลิ้ม", "Sae Lim"),
]
# Myanmar names (written in Thai script as Thai registers do) for migrant and stateless families.
_MYANMAR_MALE = [
    ("อ่อง", "Aung"),
    ("ทุน", "Htun"),
    ("ซอ", "Zaw"),
    ("จอ", "Kyaw"),
    ("มิน", "Min"),
    ("ทัน", "Than"),
]
_MYANMAR_FEMALE = [
    ("ขิ่น", "Khin"),
    ("ซู", "Su"),
    ("นิน", "Hnin"),
    ("เมียะ", "Mya"),
    ("โม", "Moe"),
    ("ตานดา", "Thandar"),
]

# DOPA prefix codes: (code, Thai, English).
_BOY = ("001", "ด.ช.", "Master")
_GIRL = ("002", "ด.ญ.", "Miss")
_MR = ("003", "นาย", "Mr.")
_MISS = ("004", "น.ส.", "Miss")
_MRS = ("005", "นาง", "Mrs.")


def prefix_for(gender: str, age_years: int, married: bool = False) -> tuple[str, str, str]:
    """DOPA prefix: children under 15 are ด.ช./ด.ญ.; adults นาย, or นาง/นางสาว by marital status."""
    if age_years < 15:
        return _BOY if gender == "male" else _GIRL
    if gender == "male":
        return _MR
    return _MRS if married else _MISS


def pick_family(rng: random.Random, myanmar: bool) -> tuple[str, str]:
    pool = _MYANMAR_MALE + _MYANMAR_FEMALE if myanmar else _FAMILY
    return pool[rng.randrange(len(pool))]


def pick_given(rng: random.Random, gender: str, myanmar: bool) -> tuple[str, str]:
    if myanmar:
        pool = _MYANMAR_MALE if gender == "male" else _MYANMAR_FEMALE
    else:
        pool = _BOYS if gender == "male" else _GIRLS
    return pool[rng.randrange(len(pool))]


def human_names(
    given: tuple[str, str], family: tuple[str, str], prefix: tuple[str, str, str]
) -> list[dict[str, Any]]:
    """The Thai official name (with its DOPA prefix code) and its English romanisation."""
    code, thai_prefix, english_prefix = prefix
    thai = {
        "extension": [
            {"url": _LANGUAGE_EXT, "valueCode": "th"},
            {
                "url": canonical.structure_definition(canonical.EXT_NAME_PREFIX),
                "valueCoding": {
                    "system": canonical.code_system(canonical.CS_DOPA_NAME_PREFIX),
                    "code": code,
                    "display": thai_prefix,
                },
            },
        ],
        "use": "official",
        "text": f"{thai_prefix}{given[0]} {family[0]}",
        "family": family[0],
        "given": [given[0]],
        "prefix": [thai_prefix],
    }
    english = {
        "extension": [{"url": _LANGUAGE_EXT, "valueCode": "en"}],
        "use": "usual",
        "text": f"{english_prefix} {given[1]} {family[1]}",
        "family": family[1],
        "given": [given[1]],
        "prefix": [english_prefix],
    }
    return [thai, english]
