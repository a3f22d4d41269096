"""What matching compares, read out of a Patient (and its guardians) once.

Thai names lose their prefixes (ด.ช., ด.ญ., เด็กชาย, เด็กหญิง, นาย, นาง, นางสาว, the DOPA
name-prefix codes; the list is package data, ``data/name-prefixes.json``) and are keyed by Thai
soundex (pythainlp's LK82 and Udom83); Thai names are also romanised (pythainlp, Royal Institute
system) to compare with names written in English. Birth dates written in the Buddhist era (2567) are
brought to the common era (2024). DOPA address codes and guardians' CIDs come along.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.identity import identifiers as ids

_LANGUAGE_EXT = "http://hl7.org/fhir/StructureDefinition/language"
_PREFIX_EXT = canonical.structure_definition(canonical.EXT_NAME_PREFIX)
_DOPA_EXT = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
_GUARDIAN_ID_EXT = canonical.structure_definition(canonical.EXT_GUARDIAN_IDENTIFIER)
_THAI = re.compile(r"[\u0E00-\u0E7F]")
_NOT_THAI_LETTER = re.compile(r"[^\u0E01-\u0E4E]")  # drops spaces, dots, digits, zero-width marks
_NOT_LATIN = re.compile(r"[^a-z]")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
# A year this large is a Buddhist-era year: BE = CE + 543, and no child here was born before CE 1900.
BE_YEARS_FROM = 2400
BE_OFFSET = 543


@cache
def _written_by_code() -> dict[str, tuple[str, ...]]:
    """DOPA name-prefix code (001 ...) -> the forms clerks write for it."""
    data = orjson.loads(
        resources.files("fhir_server.identity").joinpath("data/name-prefixes.json").read_bytes()
    )
    return {code: tuple(entry["written"]) for code, entry in data["prefixes"].items()}


def _declared_prefixes(name: dict[str, Any]) -> list[str]:
    """The prefixes a HumanName states: ``prefix`` and the DOPA code of the th-name-prefix extension."""
    declared = (
        [p for p in name.get("prefix", []) if isinstance(p, str)]
        if isinstance(name.get("prefix"), list)
        else []
    )
    for ext in name.get("extension", []) if isinstance(name.get("extension"), list) else []:
        if isinstance(ext, dict) and ext.get("url") == _PREFIX_EXT:
            code = (ext.get("valueCoding") or {}).get("code")
            declared.extend(_written_by_code().get(str(code), ()))
    return sorted(declared, key=len, reverse=True)


def _without_declared(text: str, declared: list[str]) -> str:
    for prefix in declared:
        if prefix and text.startswith(prefix) and len(text) > len(prefix):
            rest = text[len(prefix) :].lstrip(" .")
            if _NAME_START.match(rest):
                return rest
    return text


@cache
def _prefix_table() -> tuple[tuple[str, ...], dict[str, str]]:
    """(Thai and English prefixes, longest first; DOPA code -> its sex or '')."""
    data = orjson.loads(
        resources.files("fhir_server.identity").joinpath("data/name-prefixes.json").read_bytes()
    )
    written: set[str] = set()
    sexes: dict[str, str] = {}
    for code, entry in data["prefixes"].items():
        written.update(entry["written"])
        sexes[code] = entry.get("sex", "")
    return tuple(sorted(written, key=len, reverse=True)), sexes


_NAME_START = re.compile(r"^[\u0E01-\u0E2E\u0E40-\u0E44A-Za-z]")


def strip_prefix(text: str, *, loose: bool = True) -> str:
    """``text`` without leading name prefixes (several may stack: "นาย ด.ช." is a typing slip).

    What follows a prefix must start a name (a Thai consonant or leading vowel), so นางสาวิตรี
    reads as นาง + สาวิตรี. With ``loose`` False (a given name, not a whole name) a short prefix
    such as นาง or นาย only counts when a space follows it: นางฟ้า may be a name.
    """
    prefixes, _ = _prefix_table()
    value = text.strip()
    changed = True
    while changed and value:
        changed = False
        lowered = value.lower()
        for prefix in prefixes:
            if not lowered.startswith(prefix.lower()):
                continue
            rest = value[len(prefix) :]
            spaced = rest[:1] in (" ", ".")
            rest = rest.lstrip(" .")
            if not rest or not _NAME_START.match(rest):
                continue
            # An English prefix must end at a word boundary ("Mr Tan", not "Mrinal").
            if prefix.isascii() and not spaced and not prefix.endswith("."):
                continue
            if not loose and not spaced and "." not in prefix and len(prefix) < 6:
                continue
            value = rest
            changed = True
            break
    return value


@lru_cache(maxsize=65536)
def thai_key(text: str, loose: bool = False) -> str:
    """A Thai name part as written, without prefix, spaces, punctuation and repeated marks."""
    from pythainlp.util import normalize

    return _NOT_THAI_LETTER.sub("", normalize(strip_prefix(text, loose=loose)))


@lru_cache(maxsize=65536)
def soundex_keys(key: str) -> tuple[str, str]:
    """Thai soundex of a name part (LK82 and Udom83): equal for most spelling variants."""
    if not key:
        return "", ""
    from pythainlp.soundex import soundex

    return soundex(key, engine="lk82"), soundex(key, engine="udom83")


@lru_cache(maxsize=65536)
def romanised(key: str) -> str:
    """A Thai name part in Latin letters (Royal Institute system), letters only."""
    if not key:
        return ""
    from pythainlp.transliterate import romanize

    return latin_key(romanize(key, engine="royin"))


@lru_cache(maxsize=65536)
def latin_key(text: str, loose: bool = False) -> str:
    return _NOT_LATIN.sub("", strip_prefix(text, loose=loose).lower())


@dataclass(frozen=True)
class NamePart:
    thai: str = ""  # thai_key; empty for a name written only in Latin letters
    english: str = ""  # latin_key of a name written in Latin letters

    @property
    def latin(self) -> str:
        """The English form, or the Thai romanised: computed only when a Thai name meets one written
        in Latin letters (romanising loads pythainlp's word list, over a second on first use)."""
        return self.english or romanised(self.thai)

    @property
    def sounds(self) -> tuple[str, str]:
        return soundex_keys(self.thai)


@dataclass(frozen=True)
class Name:
    given: NamePart
    family: NamePart
    nickname: bool = False


@dataclass
class Features:
    national: list[ids.NationalId] = field(default_factory=list)
    broken_cids: list[str] = field(default_factory=list)
    names: list[Name] = field(default_factory=list)
    nicknames: set[str] = field(default_factory=set)  # thai_key or latin_key of each nickname
    birth: date | None = None  # common era
    birth_text: str = ""  # as written, for day/month checks when only part is known
    gender: str | None = None
    subdistricts: set[str] = field(default_factory=set)
    districts: set[str] = field(default_factory=set)
    guardian_cids: set[str] = field(default_factory=set)

    @property
    def cids(self) -> set[str]:
        return {n.value for n in self.national if n.kind == ids.CID}

    def has_matchable(self) -> bool:
        """Enough to look for a child: an identifier, a name, or a birth date."""
        return bool(self.national or self.broken_cids or self.names or self.birth or self.guardian_cids)


def _language(name: dict[str, Any]) -> str | None:
    for ext in name.get("extension", []) if isinstance(name.get("extension"), list) else []:
        if (
            isinstance(ext, dict)
            and ext.get("url") == _LANGUAGE_EXT
            and isinstance(ext.get("valueCode"), str)
        ):
            return ext["valueCode"].split("-")[0].lower()
    return None


def _text_parts(name: dict[str, Any]) -> tuple[str, str]:
    given = name.get("given")
    given_text = " ".join(g for g in given if isinstance(g, str)) if isinstance(given, list) else ""
    family: str = name["family"] if isinstance(name.get("family"), str) else ""
    if not given_text and not family and isinstance(name.get("text"), str):
        words = strip_prefix(name["text"]).split()
        if words:
            given_text, family = words[0], " ".join(words[1:])
    return given_text, family


def _part(text: str, thai: bool) -> NamePart:
    if not text:
        return NamePart()
    if thai:
        key = thai_key(text)
        return NamePart(key)
    return NamePart("", latin_key(text))


def read_names(resource: dict[str, Any]) -> tuple[list[Name], set[str]]:
    names: list[Name] = []
    nicknames: set[str] = set()
    for name in resource.get("name", []) if isinstance(resource.get("name"), list) else []:
        if not isinstance(name, dict):
            continue
        given, family = _text_parts(name)
        given = _without_declared(given, _declared_prefixes(name))
        written = f"{given} {family}"
        thai = _language(name) == "th" or (_language(name) is None and bool(_THAI.search(written)))
        if name.get("use") == "nickname":
            key = thai_key(strip_nickname(given or family)) if thai else latin_key(given or family)
            if key:
                nicknames.add(key)
            continue
        entry = Name(_part(given, thai), _part(family, thai))
        if entry.given.english or entry.family.english or entry.given.thai or entry.family.thai:
            names.append(entry)
    return names, nicknames


def strip_nickname(text: str) -> str:
    """Thai nicknames are often written with น้อง ("little"): น้องมะลิ is มะลิ."""
    value = text.strip()
    return value[len("น้อง") :].strip() if value.startswith("น้อง") and len(value) > 4 else value


def parse_birth(text: Any) -> date | None:
    """A FHIR date (full precision only) in the common era; Buddhist-era years are converted."""
    if not isinstance(text, str):
        return None
    match = _DATE.match(text)
    if not match or not match.group(3):
        return None
    year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if year >= BE_YEARS_FROM:
        year -= BE_OFFSET
    try:
        return date(year, month, day)
    except ValueError:
        return None


def birth_variants(value: date) -> list[date]:
    """The dates a clerk may have meant: as written, and with day and month swapped."""
    out = [value]
    if value.day <= 12 and value.day != value.month:
        with contextlib.suppress(ValueError):
            out.append(date(value.year, value.day, value.month))
    return out


def address_codes(resource: dict[str, Any]) -> tuple[set[str], set[str]]:
    subdistricts: set[str] = set()
    districts: set[str] = set()
    for address in resource.get("address", []) if isinstance(resource.get("address"), list) else []:
        for ext in address.get("extension", []) if isinstance(address, dict) else []:
            if not isinstance(ext, dict) or ext.get("url") != _DOPA_EXT:
                continue
            for part in ext.get("extension", []) if isinstance(ext.get("extension"), list) else []:
                code = (part.get("valueCoding") or {}).get("code") if isinstance(part, dict) else None
                if not isinstance(code, str):
                    continue
                if part.get("url") == "subdistrict":
                    subdistricts.add(code)
                    districts.add(code[:4])
                elif part.get("url") == "district":
                    districts.add(code)
    return subdistricts, districts


def guardian_cids_of(resource: dict[str, Any], guardians: list[dict[str, Any]]) -> set[str]:
    """Valid CIDs of the child's guardians: from RelatedPersons, and from a golden record's contacts."""
    found: set[str] = set()
    for person in guardians:
        found.update(n.value for n in ids.national_ids(person) if n.kind == ids.CID)
    for contact in resource.get("contact", []) if isinstance(resource.get("contact"), list) else []:
        for ext in contact.get("extension", []) if isinstance(contact, dict) else []:
            if isinstance(ext, dict) and ext.get("url") == _GUARDIAN_ID_EXT:
                nid, _ = ids.classify(ext.get("valueIdentifier"))
                if nid is not None and nid.kind == ids.CID:
                    found.add(nid.value)
    return found


def features(resource: dict[str, Any], guardians: list[dict[str, Any]] | None = None) -> Features:
    names, nicknames = read_names(resource)
    subdistricts, districts = address_codes(resource)
    gender = resource.get("gender")
    return Features(
        national=ids.national_ids(resource),
        broken_cids=ids.broken_cids(resource),
        names=names,
        nicknames=nicknames,
        birth=parse_birth(resource.get("birthDate")),
        birth_text=str(resource.get("birthDate") or ""),
        gender=gender if gender in ("male", "female", "other") else None,
        subdistricts=subdistricts,
        districts=districts,
        guardian_cids=guardian_cids_of(resource, guardians or []),
    )
