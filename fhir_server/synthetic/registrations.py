"""One child, several agencies: each agency's own record of a child, with the noise real registers have.

The population generator (``population.generate``) makes one Patient per child. Here each child is
registered again by 2 to 4 of the agencies near its home (health centre, hospital, childcare centre or
school, social-welfare office), as each would have typed it: prefix and spelling variants, names in
Thai or English, Buddhist-era years, day and month swapped, a missing CID at a childcare centre, a
G-code at school, a mistyped CID digit, guardians recorded or not. Some children get a twin: same birth
date, guardians, family name and address, another given name and CID. Everything is seeded, so a
seed gives the same registrations, and each registration names the true child (for measuring linkage).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from fhir_server import canonical
from fhir_server.synthetic.agencies import Agency, AgencyDirectory, build_agencies
from fhir_server.synthetic.identifiers import cid_check_digit, gcode_identifier, new_id
from fhir_server.synthetic.population import generate

_LANGUAGE_EXT = "http://hl7.org/fhir/StructureDefinition/language"
_PREFIX_EXT = canonical.structure_definition(canonical.EXT_NAME_PREFIX)
_DOPA_EXT = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
# Prefix forms clerks write, per DOPA code: the abbreviation, the long form, or nothing at all.
_PREFIX_FORMS = {"001": ("ด.ช.", "เด็กชาย", "ด.ช. "), "002": ("ด.ญ.", "เด็กหญิง", "ด.ญ. ")}
# Letters typed for one another in Thai names (same sound), and marks that come and go.
_SAME_SOUND = {"ศ": "ส", "ส": "ศ", "ณ": "น", "น": "ณ", "ธ": "ท", "ท": "ธ", "ภ": "พ", "พ": "ภ", "ฐ": "ถ"}
_DROPPABLE = ("์", "่", "้")
_NICKNAMES = ("มะลิ", "ต้นกล้า", "ฟ้า", "แบม", "ข้าวปุ้น", "น้ำ", "บีม", "ออม", "เจได", "ปลา", "มิว", "ภูมิ")


@dataclass
class NoiseConfig:
    """How often each kind of slip happens (per registration). Defaults are plausible, not measured."""

    spelling: float = 0.10
    no_prefix: float = 0.15
    english_name: float = 0.35
    romanisation_variant: float = 0.3
    nickname: float = 0.3
    buddhist_year: float = 0.2
    swapped_day_month: float = 0.04
    cid_typo: float = 0.03
    wrong_sex: float = 0.005
    missing_cid: dict[str, float] = field(
        default_factory=lambda: {
            "health-centre": 0.02,
            "hospital": 0.05,
            "childcare-centre": 0.4,
            "school": 0.1,
            "social-welfare": 0.25,
        }
    )
    guardians: float = 0.6
    twins: float = 0.02


@dataclass
class Registration:
    """One agency's record of one child: a Patient and the guardians it recorded."""

    child: str  # the true child (id of the generator's Patient, or of its twin)
    agency: Agency
    resources: list[dict[str, Any]]
    twin_of: str | None = None  # the true child's twin, if it has one

    @property
    def patient(self) -> dict[str, Any]:
        return self.resources[0]

    @property
    def organization(self) -> str:
        return f"Organization/{self.agency.id}"


def _cid(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier", []):
        if identifier.get("system") == canonical.CID_SYSTEM:
            return str(identifier["value"])
    return None


def _typo(rng: random.Random, cid: str) -> str:
    """One digit typed wrong (the check digit then fails, as it always does for one slip)."""
    i = rng.randrange(12)
    digit = str((int(cid[i]) + rng.randrange(1, 10)) % 10)
    return cid[:i] + digit + cid[i + 1 :]


def _misspell(rng: random.Random, text: str) -> str:
    spots = [i for i, ch in enumerate(text) if ch in _SAME_SOUND or ch in _DROPPABLE]
    if not spots:
        return text
    i = rng.choice(spots)
    ch = text[i]
    return text[:i] + ("" if ch in _DROPPABLE else _SAME_SOUND[ch]) + text[i + 1 :]


def _roman_variant(rng: random.Random, text: str) -> str:
    """The same Thai name romanised another way (Phimchanok / Pimchanok, Suksawat / Sooksawat)."""
    for a, b in (("Ph", "P"), ("Th", "T"), ("Kh", "K"), ("ch", "j"), ("u", "oo"), ("o", "or")):
        if a in text and rng.random() < 0.5:
            return text.replace(a, b, 1)
    return text


def _thai_and_english(source: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    thai = english = None
    for name in source.get("name", []):
        language = next(
            (e.get("valueCode") for e in name.get("extension", []) if e["url"] == _LANGUAGE_EXT), None
        )
        if language == "en":
            english = name
        elif thai is None:
            thai = name
    assert thai is not None
    return thai, english


def _prefix_code(name: dict[str, Any]) -> str | None:
    for ext in name.get("extension", []):
        if ext["url"] == _PREFIX_EXT:
            return str(ext["valueCoding"]["code"])
    return None


def _name(rng: random.Random, source: dict[str, Any], noise: NoiseConfig, kind: str) -> list[dict[str, Any]]:
    thai, english = _thai_and_english(source)
    given, family = thai["given"][0], thai.get("family", "")
    if rng.random() < noise.spelling:
        if rng.random() < 0.5:
            given = _misspell(rng, given)
        else:
            family = _misspell(rng, family)
    code = _prefix_code(thai)
    name: dict[str, Any] = {"use": "official", "given": [given]}
    if family:
        name["family"] = family
    forms = _PREFIX_FORMS.get(code or "", ())
    if forms and rng.random() >= noise.no_prefix:
        written = rng.choice(forms)
        name["text"] = f"{written}{given} {family}".strip()
        if rng.random() < 0.5:
            name["extension"] = [
                {
                    "url": _PREFIX_EXT,
                    "valueCoding": {
                        "system": canonical.code_system(canonical.CS_DOPA_NAME_PREFIX),
                        "code": code,
                    },
                }
            ]
    else:
        name["text"] = f"{given} {family}".strip()
    names = [name]
    if english is not None and rng.random() < noise.english_name:
        first, last = english["given"][0], english.get("family", "")
        if rng.random() < noise.romanisation_variant:
            first = _roman_variant(rng, first)
        names.append(
            {
                "extension": [{"url": _LANGUAGE_EXT, "valueCode": "en"}],
                "use": "usual",
                "given": [first],
                **({"family": last} if last else {}),
            }
        )
    if kind in ("childcare-centre", "school") and rng.random() < noise.nickname:
        nick = rng.choice(_NICKNAMES)
        names.append({"use": "nickname", "given": [f"น้อง{nick}" if rng.random() < 0.5 else nick]})
    return names


def _birth(rng: random.Random, born: str, noise: NoiseConfig, kind: str) -> str:
    year, month, day = int(born[:4]), int(born[5:7]), int(born[8:10])
    if day <= 12 and day != month and rng.random() < noise.swapped_day_month:
        month, day = day, month
    # A Buddhist-era year in a FHIR date; 29 February of a leap year is no date in the BE year (a server
    # refuses it, so no client can store it): such a child keeps its CE year.
    writes_be = kind in ("hospital", "childcare-centre", "social-welfare")
    be_year = writes_be and rng.random() < noise.buddhist_year
    if be_year and (month, day) != (2, 29):
        year += 543
    return f"{year:04d}-{month:02d}-{day:02d}"


def _patient(
    rng: random.Random, source: dict[str, Any], agency: Agency, noise: NoiseConfig
) -> dict[str, Any]:
    kind = agency.kind
    identifiers: list[dict[str, Any]] = []
    cid = _cid(source)
    if cid and rng.random() >= noise.missing_cid.get(kind, 0.1):
        identifiers.append(
            {
                "system": canonical.CID_SYSTEM,
                "value": _typo(rng, cid) if rng.random() < noise.cid_typo else cid,
            }
        )
    gcodes = [i for i in source.get("identifier", []) if i.get("system") == canonical.GCODE_SYSTEM]
    if kind == "school":
        identifiers += gcodes
    identifiers.append({"system": f"{canonical.BASE}/id/local/{agency.id}", "value": new_id(rng)[:8]})
    gender = source.get("gender", "unknown")
    if rng.random() < noise.wrong_sex:
        gender = "female" if gender == "male" else "male"
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": new_id(rng),
        "identifier": identifiers,
        "name": _name(rng, source, noise, kind),
        "gender": gender,
        "birthDate": _birth(rng, source["birthDate"], noise, kind),
    }
    addresses = source.get("address", [])
    if addresses:
        address = dict(addresses[0])
        if kind != "health-centre" and rng.random() < 0.3:
            address.pop("extension", None)  # no DOPA codes, only the written address
        patient["address"] = [address]
    return patient


def _guardians(rng: random.Random, patient_id: str, guardians: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for guardian in guardians:
        copy = {k: v for k, v in guardian.items() if k not in ("id", "meta")}
        copy["id"] = new_id(rng)
        copy["patient"] = {"reference": f"Patient/{patient_id}"}
        out.append(copy)
    return out


def _agencies_for(
    rng: random.Random, directory: AgencyDirectory, patient: dict[str, Any], reference: date
) -> list[Agency]:
    district = _district(patient)
    local = directory.by_district.get(district) or next(iter(directory.by_district.values()))
    age = (reference - date.fromisoformat(patient["birthDate"])).days // 365
    pool: list[Agency] = [local.health_centres[rng.randrange(len(local.health_centres))], local.hospital]
    if 2 <= age <= 5 and local.childcare_centres:
        pool.append(local.childcare_centres[rng.randrange(len(local.childcare_centres))])
    elif age >= 6 and local.schools:
        pool.append(local.schools[rng.randrange(len(local.schools))])
    pool.append(local.social_welfare)
    count = min(len(pool), rng.choice((2, 2, 3, 3, 4)))
    chosen = [pool[0], *rng.sample(pool[1:], count - 1)]
    return chosen


def _district(patient: dict[str, Any]) -> str:
    for address in patient.get("address", []):
        for ext in address.get("extension", []):
            if ext["url"] == _DOPA_EXT:
                for part in ext["extension"]:
                    if part["url"] == "district":
                        return str(part["valueCoding"]["code"])
    return ""


def _twin(
    rng: random.Random, patient: dict[str, Any], guardians: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A twin: same birth date, family, guardians and address; another given name and CID."""
    from fhir_server.synthetic.names import pick_given

    twin = {**patient, "id": new_id(rng)}
    gender = "male" if rng.random() < 0.5 else "female"
    twin["gender"] = gender
    thai_given, english_given = pick_given(rng, gender, False)
    names = []
    for name in patient["name"]:
        language = next(
            (e.get("valueCode") for e in name.get("extension", []) if e["url"] == _LANGUAGE_EXT), "th"
        )
        given = english_given if language == "en" else thai_given
        if given == name["given"][0]:
            given = given + ("a" if language == "en" else "า")
        text = name.get("text", "").replace(name["given"][0], given)
        extensions = [
            e
            if e["url"] != _PREFIX_EXT
            else {**e, "valueCoding": {**e["valueCoding"], "code": "001" if gender == "male" else "002"}}
            for e in name.get("extension", [])
        ]
        names.append({**name, "given": [given], "text": text, "extension": extensions})
    twin["name"] = names
    identifiers = []
    for identifier in patient.get("identifier", []):
        if identifier.get("system") == canonical.CID_SYSTEM:
            body = identifier["value"][:5] + f"{rng.randrange(10_000_000):07d}"
            identifier = {**identifier, "value": body + str(cid_check_digit(body))}
        elif identifier.get("system") == canonical.GCODE_SYSTEM:
            identifier = gcode_identifier(f"G{rng.randrange(10**12):012d}")
        identifiers.append(identifier)
    twin["identifier"] = identifiers
    twin["multipleBirthInteger"] = 2
    return twin, [{**g, "patient": {"reference": f"Patient/{twin['id']}"}} for g in guardians]


def children_with_guardians(
    seed: int, children: int
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each child of the synthetic population with its guardians (the generator's own records)."""
    stream = generate(seed, children)
    next(stream)  # the agencies
    for household in stream:
        patients = [r for r in household if r["resourceType"] == "Patient"]
        people = [r for r in household if r["resourceType"] == "RelatedPerson"]
        for patient in patients:
            ref = f"Patient/{patient['id']}"
            yield patient, [p for p in people if p["patient"]["reference"] == ref]


def registrations(
    seed: int,
    children: int,
    *,
    noise: NoiseConfig | None = None,
    reference: date | None = None,
    noise_seed: int = 0,
) -> Iterator[Registration]:
    """The population's children (and their twins), each registered by 2 to 4 agencies.

    ``seed`` picks the population; ``noise_seed`` the agencies and slips, so another ``noise_seed``
    registers the same children again, differently (for queries about children already stored).
    """
    noise = noise or NoiseConfig()
    directory = build_agencies(seed)
    rng = random.Random(f"termtem-registrations:{seed}:{noise_seed}")
    from fhir_server.synthetic.config import PopulationConfig

    reference = reference or PopulationConfig().reference_date
    for patient, guardians in children_with_guardians(seed, children):
        family = [(patient, guardians)]
        if rng.random() < noise.twins:
            family.append(_twin(rng, patient, guardians))
        siblings = {family[0][0]["id"]: family[-1][0]["id"], family[-1][0]["id"]: family[0][0]["id"]}
        for child, people in family:
            twin = siblings[child["id"]] if len(family) > 1 else None
            for agency in _agencies_for(rng, directory, child, reference):
                record = _patient(rng, child, agency, noise)
                kept = _guardians(rng, record["id"], people) if rng.random() < noise.guardians else []
                yield Registration(child["id"], agency, [record, *kept], twin)


def agency_resources(seed: int) -> list[dict[str, Any]]:
    """The Organizations the registrations name (write them first)."""
    return list(build_agencies(seed).resources)
