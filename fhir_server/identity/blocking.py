"""Blocking keys: which golden records a new record is worth scoring against, as indexed tokens.

A golden record carries its keys as ``meta.tag`` codes of ``IDENTITY_BLOCK_TAG_SYSTEM`` (server-set,
refused in client content), so the candidates of a record are one token look-up in the search index,
however many children the store holds. A key is ``birth date/sex/name key``:

- birth date: the golden record's (common era); a record looks up its own with day and month swapped
  and a year either side, as clerks slip;
- sex: the golden record's, or ``u`` when unknown; a record of known sex looks up its own and ``u``,
  a record of unknown sex every sex;
- name key: Thai soundex (pythainlp LK82 and Udom83) of the given name and of the family name, which
  spelling variants share; the initials of given and family name in Latin letters (a Thai name's
  initial consonant romanised, Royal Institute system), which a Thai name shares with its English
  spelling; each nickname. Every golden record also carries ``*``, which only a record without any
  name looks up (it then scores the children born that day of its sex, up to the block limit).

Any shared key puts a golden record in the block. Every pair that the scoring weights could grade
``probable`` shares one of these keys unless a national identifier, a typing slip of a CID or a
guardian's CID connects them, and those are looked up separately (``candidates``). Records whose sexes
or birth dates (beyond the slips above) differ are left out: that is the price of a bounded block.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from fhir_server import canonical
from fhir_server.identity.features import Features, NamePart, birth_variants

SYSTEM = canonical.IDENTITY_BLOCK_TAG_SYSTEM
SEXES = ("male", "female", "other")
UNKNOWN_SEX = "u"
ANY_NAME = "*"
_LEADING_VOWELS = "\u0e40\u0e41\u0e42\u0e43\u0e44"  # เ แ โ ใ ไ come before the consonant they follow
_SILENT_LEADERS = "\u0e2b"  # ห leading a low consonant (หญิง, หนู): the next consonant is heard
_VOWEL_INITIAL = "v"


@lru_cache(maxsize=256)
def _romanised_consonant(consonant: str) -> str:
    """An initial consonant in Royal Institute romanisation: pythainlp's consonant table (whole-word
    romanising tokenises with a word list that takes over a second to load, on the write path)."""
    try:
        from pythainlp.transliterate.royin import _CONSONANTS
    except ImportError:  # another pythainlp layout: the public function gives the same letters
        from pythainlp.transliterate import romanize

        return romanize(consonant, engine="royin")
    initial_forms = _CONSONANTS.get(consonant)
    return initial_forms[0] if initial_forms else ""


def _latin_class(letter: str) -> str:
    """One Latin initial, folded where spellings of one Thai sound differ (j/ch, vowels)."""
    if not letter:
        return ""
    if letter in "aeiou":
        return _VOWEL_INITIAL
    return "c" if letter == "j" else letter


def initial(part: NamePart) -> str:
    """The Latin initial of a name part: of its English form, or of its Thai form romanised."""
    if part.english:
        return _latin_class(part.english[0])
    text = part.thai.lstrip(_LEADING_VOWELS)
    if not text:
        return ""
    first = text[0]
    if first in _SILENT_LEADERS and len(text) > 1:
        first = text[1]
    if first == "\u0e2d":  # อ: the name starts with its vowel
        return _VOWEL_INITIAL
    return _latin_class(_romanised_consonant(first)[:1])


def name_keys(f: Features) -> set[str]:
    """The name keys of a record (see the module docstring)."""
    keys: set[str] = set()
    for name in f.names:
        for label, part in (("g", name.given), ("f", name.family)):
            if part.thai:
                lk82, udom83 = part.sounds
                keys.update({f"{label}l:{lk82}", f"{label}u:{udom83}"})
        keys.add(f"i:{initial(name.given) or '-'}.{initial(name.family) or '-'}")
    keys.update(f"n:{nickname}" for nickname in f.nicknames)
    return keys


def _query_name_keys(f: Features) -> set[str]:
    """A query's name keys, plus the initials with either part unknown (a golden record may lack it)."""
    keys = name_keys(f)
    for key in list(keys):
        if key.startswith("i:"):
            given, family = key[2:].split(".")
            keys.update({f"i:{given}.-", f"i:-.{family}"})
    return keys or {ANY_NAME}


def _sex(f: Features) -> str:
    return f.gender or UNKNOWN_SEX


def golden_keys(f: Features) -> list[str]:
    """The keys a golden record with features ``f`` carries (none without a birth date)."""
    if f.birth is None:
        return []
    return sorted(f"{f.birth.isoformat()}/{_sex(f)}/{key}" for key in {*name_keys(f), ANY_NAME})


def birth_dates(born: date) -> list[date]:
    """The dates a record's child may be filed under: as written, day and month swapped, a year off."""
    dates = list(birth_variants(born))
    for years in (-1, 1):
        try:
            dates.append(born.replace(year=born.year + years))
        except ValueError:  # 29 February
            dates.append(born.replace(year=born.year + years, day=28) + timedelta(days=1))
    return list(dict.fromkeys(dates))


def query_keys(f: Features) -> list[str]:
    """The keys to look up for a record with features ``f`` (none without a birth date)."""
    if f.birth is None:
        return []
    sexes = [f.gender, UNKNOWN_SEX] if f.gender else [*SEXES, UNKNOWN_SEX]
    names = sorted(_query_name_keys(f))
    return [f"{d.isoformat()}/{s}/{n}" for d in birth_dates(f.birth) for s in sexes for n in names]
