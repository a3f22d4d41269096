"""Value rules: turn one raw legacy value (a string from a text file, a cell, a JSON value) into a clean one.

Legacy Thai data writes the same fact many ways (Buddhist Era years, Thai digits, Thai month names, CIDs
with dashes, prefixes glued to names). Each rule here accepts those forms and either returns a normalised
value or raises :class:`ValueRuleError` with a reason a data clerk can act on. Rules are named in the
mapping specs, so a new format reuses them without new code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import geothai

BE_OFFSET = 543
_BE_THRESHOLD = 2400  # a four-digit year at or above this is a Buddhist Era year


class ValueRuleError(ValueError):
    """A raw value that cannot be used; ``reason`` is shown in the error report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ValueRuleWarning(Exception):
    """A value that is kept but looks implausible: ``value`` is used, ``reason`` goes in the report as a
    warning (the record is still written)."""

    def __init__(self, reason: str, value: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.value = value


_THAI_DIGITS = str.maketrans("๐๑๒๓๔๕๖๗๘๙", "0123456789")

_THAI_MONTHS: dict[str, int] = {}
for _i, (_full, _abbr) in enumerate(
    [
        ("มกราคม", "ม.ค."), ("กุมภาพันธ์", "ก.พ."), ("มีนาคม", "มี.ค."), ("เมษายน", "เม.ย."),
        ("พฤษภาคม", "พ.ค."), ("มิถุนายน", "มิ.ย."), ("กรกฎาคม", "ก.ค."), ("สิงหาคม", "ส.ค."),
        ("กันยายน", "ก.ย."), ("ตุลาคม", "ต.ค."), ("พฤศจิกายน", "พ.ย."), ("ธันวาคม", "ธ.ค."),
    ],
    start=1,
):
    _THAI_MONTHS[_full] = _i
    _THAI_MONTHS[_abbr] = _i
    _THAI_MONTHS[_abbr.replace(".", "")] = _i
for _i, _name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1
):
    _THAI_MONTHS[_name] = _i

# DOPA name prefixes that matter for children and their families. Code, implied gender.
# Codes 001-005 are the DOPA codes quoted in the MOPH 43-file standard; the others carry no code.
_PREFIXES: list[tuple[str, str | None, str | None]] = [
    ("เด็กชาย", "001", "male"), ("ด.ช.", "001", "male"), ("ดช.", "001", "male"),
    ("เด็กหญิง", "002", "female"), ("ด.ญ.", "002", "female"), ("ดญ.", "002", "female"),
    ("นางสาว", "004", "female"), ("น.ส.", "004", "female"),
    ("นาย", "003", "male"), ("นาง", "005", "female"),
    ("Master", None, "male"), ("Miss", None, "female"), ("Mrs.", None, "female"), ("Mr.", None, "male"),
]
_PREFIXES.sort(key=lambda p: len(p[0]), reverse=True)
# The canonical written form for each DOPA code (what goes into HumanName.prefix).
_PREFIX_TEXT = {"001": "ด.ช.", "002": "ด.ญ.", "003": "นาย", "004": "น.ส.", "005": "นาง"}


def thai_digits(text: str) -> str:
    """Replace Thai digits ๐-๙ by ASCII digits."""
    return text.translate(_THAI_DIGITS)


def _clean(raw: Any) -> str | None:
    if raw is None:
        return None
    text = str(raw).replace("\u200b", "").replace("\xa0", " ").strip()
    text = re.sub(r"\s+", " ", text)
    return text or None


# --- rules -------------------------------------------------------------------------------------------


def text(raw: Any, args: dict[str, Any]) -> str | None:
    value = _clean(raw)
    if value is not None and args.get("max_length") and len(value) > int(args["max_length"]):
        raise ValueRuleError(f"longer than {args['max_length']} characters")
    return value


def code(raw: Any, args: dict[str, Any]) -> str | None:
    """A code from a code list: Thai digits normalised, leading zeros restored (``width``), unknowns dropped.

    Spreadsheets turn the vaccine code ``010`` into the number 10; ``width: 3`` gives it back its zeros.
    Codes listed in ``unknown`` (for example 9, 99, 999) mean "not known" and become no value.
    """
    value = _clean(raw)
    if value is None:
        return None
    value = thai_digits(value)
    if re.fullmatch(r"\d+\.0", value):  # a code read from a numeric spreadsheet cell
        value = value[:-2]
    width = args.get("width")
    if width and value.isdigit() and len(value) < int(width):
        value = value.zfill(int(width))
    if args.get("upper", True):
        value = value.upper()
    if value in {str(u) for u in args.get("unknown", [])}:
        return None
    pattern = args.get("pattern")
    if pattern and not re.fullmatch(pattern, value):
        raise ValueRuleError(f"code {value!r} is not of the form {pattern}")
    return value


def digits(raw: Any, args: dict[str, Any]) -> str | None:
    """A number used as an identifier (student number, PID): Thai digits, spaces and dashes removed."""
    value = _clean(raw)
    if value is None:
        return None
    value = re.sub(r"[\s\-]", "", thai_digits(value))
    if re.fullmatch(r"\d+\.0", value):
        value = value[:-2]
    if not value.isdigit():
        raise ValueRuleError(f"{value!r} is not a number")
    width = args.get("width")
    if width and len(value) < int(width):
        value = value.zfill(int(width))
    length = args.get("length")
    if length and len(value) != int(length):
        raise ValueRuleError(f"must have {length} digits, has {len(value)}")
    return value


def cid_check_digit(first12: str) -> int:
    """The mod-11 check digit of a Thai citizen ID (weights 13..2)."""
    total = sum(int(d) * (13 - i) for i, d in enumerate(first12))
    return (11 - total % 11) % 10


def cid(raw: Any, args: dict[str, Any]) -> str | None:
    """A 13-digit Thai citizen ID; dashes and spaces removed, the check digit verified."""
    value = _clean(raw)
    if value is None:
        return None
    value = re.sub(r"[\s\-.]", "", thai_digits(value))
    if re.fullmatch(r"\d+\.0", value):
        value = value[:-2]
    if value.strip("0") == "" or value in {str(u) for u in args.get("unknown", [])}:
        return None
    if not re.fullmatch(r"\d{13}", value):
        raise ValueRuleError(f"CID {value!r} must have 13 digits")
    expected = cid_check_digit(value[:12])
    if int(value[12]) != expected:
        raise ValueRuleError(f"CID {value} has a wrong check digit (expected {expected})")
    return value


def gcode(raw: Any, args: dict[str, Any]) -> str | None:
    """A Ministry of Education G-code: ``G`` and 12 digits, for students without a CID."""
    value = _clean(raw)
    if value is None:
        return None
    value = re.sub(r"[\s\-]", "", thai_digits(value)).upper()
    if not re.fullmatch(r"G\d{12}", value):
        raise ValueRuleError(f"G-code {value!r} must be G followed by 12 digits")
    return value


def person_id(raw: Any, args: dict[str, Any]) -> dict[str, str] | None:
    """A column that holds either a CID or a G-code: ``{"kind": "cid"|"gcode", "value": ...}``."""
    value = _clean(raw)
    if value is None:
        return None
    if thai_digits(value).upper().lstrip().startswith("G"):
        found = gcode(value, args)
        return {"kind": "gcode", "value": found} if found else None
    found = cid(value, args)
    return {"kind": "cid", "value": found} if found else None


def _year(value: int, era: str, two_digit: bool) -> int:
    if two_digit:
        return (2500 + value - BE_OFFSET) if era in ("be", "auto") else 2000 + value
    if era == "be" or (era == "auto" and value >= _BE_THRESHOLD):
        return value - BE_OFFSET
    return value


def _make_date(year: int, month: int, day: int, raw: str) -> date:
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise ValueRuleError(f"{raw!r} is not a real date") from exc


def parse_date(raw: Any, era: str = "auto") -> date | None:
    """Read a date written in any of the forms Thai agencies use.

    ``YYYYMMDD``, ``YYYY-MM-DD``, ``DD/MM/YYYY`` (also ``-`` and ``.``), ``DD/MM/YY`` (a Buddhist Era short
    year unless ``era`` is ``ce``), ``15 มีนาคม 2566``, ``15 มี.ค. 66``, ``15 Mar 2023``; Thai digits anywhere;
    spreadsheet dates (a date typed as 2566 in a Thai-locale sheet is stored in year 2566).
    ``era``: ``auto`` treats four-digit years from 2400 as Buddhist Era, ``be``/``ce`` force one.
    """
    if raw is None:
        return None
    if isinstance(raw, datetime):
        raw = raw.date()
    if isinstance(raw, date):
        if raw.year >= _BE_THRESHOLD:
            return _make_date(raw.year - BE_OFFSET, raw.month, raw.day, raw.isoformat())
        return raw
    value = _clean(raw)
    if value is None:
        return None
    value = thai_digits(value)
    original = value
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{6})?", value):
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        return _make_date(_year(y, era, False), mo or 1, d or 1, original)
    if m := re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T].*)?", value):
        return _make_date(_year(int(m[1]), era, False), int(m[2]), int(m[3]), original)
    if m := re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})(?: .*)?", value):
        year = _year(int(m[3]), era, len(m[3]) == 2)
        return _make_date(year, int(m[2]), int(m[1]), original)
    if m := re.fullmatch(r"(\d{1,2})\s*([^\d\s]+)\s*(\d{2}|\d{4})", value):
        month = _THAI_MONTHS.get(m[2]) or _THAI_MONTHS.get(m[2].lower()[:3])
        if month:
            if m[2].isascii():
                era = "ce" if era == "auto" and len(m[3]) == 2 else era
            year = _year(int(m[3]), era, len(m[3]) == 2)
            return _make_date(year, month, int(m[1]), original)
    raise ValueRuleError(f"{original!r} is not a date in a known form")


def date_rule(raw: Any, args: dict[str, Any]) -> str | None:
    found = parse_date(raw, args.get("era", "auto"))
    if found is None:
        return None
    if args.get("not_future") and found > date.today():
        raise ValueRuleError(f"{found.isoformat()} is in the future")
    if found.year < int(args.get("min_year", 1900)):
        raise ValueRuleError(f"{found.isoformat()} is before {args.get('min_year', 1900)}")
    return found.isoformat()


def datetime_rule(raw: Any, args: dict[str, Any]) -> str | None:
    """A timestamp; ``YYYYMMDDHHMMSS`` (43-file D_UPDATE) keeps its time, other forms give the date."""
    value = _clean(raw)
    if value is None:
        return None
    value = thai_digits(value)
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})", value):
        day = parse_date(value[:8], args.get("era", "auto"))
        assert day is not None
        hh, mm, ss = int(m[4]), int(m[5]), int(m[6])
        if hh > 23 or mm > 59 or ss > 59:
            raise ValueRuleError(f"{value!r} is not a real time")
        tz = args.get("tz", "+07:00")
        return f"{day.isoformat()}T{hh:02d}:{mm:02d}:{ss:02d}{tz}"
    return date_rule(value, args)


def decimal(raw: Any, args: dict[str, Any]) -> float | None:
    """A measured number; Thai digits and trailing units (กก., kg, ซม., cm) accepted, range checked."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        number = float(raw)
    else:
        value = _clean(raw)
        if value is None:
            return None
        value = thai_digits(value)
        value = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", value)  # 1,234 -> 1234
        value = re.sub(r"^(-?\d+),(\d{1,2})(?!\d)", r"\1.\2", value)  # a decimal comma: 12,5 -> 12.5
        m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(?:[^\d\s.,].*)?", value)
        if not m:
            raise ValueRuleError(f"{value!r} is not a number")
        number = float(m[1])
    if number == 0 and args.get("zero_is_missing"):
        return None
    low, high = args.get("min"), args.get("max")
    if (low is not None and number < low) or (high is not None and number > high):
        template = args.get("below" if low is not None and number < low else "above")
        raise ValueRuleError(
            template.format(value=f"{number:g}") if template else f"{number:g} is outside {low}-{high}"
        )
    places = args.get("places")
    result = round(number, int(places)) if places is not None else number
    _check_plausible(number, result, args.get("plausible"))
    return result


def _check_plausible(number: float, result: Any, plausible: dict[str, Any] | None) -> None:
    """Warn (keeping the value) when a number is possible but outside its usual range."""
    if not plausible:
        return
    low, high = plausible.get("min"), plausible.get("max")
    if low is not None and number < low:
        raise ValueRuleWarning(plausible["below"].format(value=f"{number:g}"), result)
    if high is not None and number > high:
        raise ValueRuleWarning(plausible["above"].format(value=f"{number:g}"), result)


def integer(raw: Any, args: dict[str, Any]) -> int | None:
    try:
        number = decimal(raw, args)
    except ValueRuleWarning as warning:
        if warning.value != int(warning.value):
            raise ValueRuleError(f"{warning.value:g} is not a whole number") from None
        raise ValueRuleWarning(warning.reason, int(warning.value)) from None
    if number is None:
        return None
    if number != int(number):
        raise ValueRuleError(f"{number:g} is not a whole number")
    return int(number)


def phone(raw: Any, args: dict[str, Any]) -> str | None:
    """A Thai phone number as 9-10 digits with a leading 0 (+66 converted)."""
    value = _clean(raw)
    if value is None:
        return None
    value = re.sub(r"[\s\-().]", "", thai_digits(value))
    if value.startswith("+66"):
        value = "0" + value[3:]
    if re.fullmatch(r"\d{8,9}", value) and not value.startswith("0"):
        value = "0" + value  # a spreadsheet ate the leading zero
    if not re.fullmatch(r"0\d{8,9}", value):
        raise ValueRuleError(f"{value!r} is not a Thai phone number")
    return value


def thai_name(raw: Any, args: dict[str, Any]) -> dict[str, Any] | None:
    """Split ``ด.ช.สมชาย ใจดี`` into prefix, given names and family name.

    Returns ``{"prefix", "prefix_code", "gender", "given": [...], "family", "text"}``; the prefix parts are
    None when the name has none. A prefix code given in ``args["prefix_code"]`` is not needed: the code is
    derived from the prefix text.
    """
    value = _clean(raw)
    if value is None:
        return None
    prefix, prefix_code, gender = split_prefix(value)
    rest = value[len(prefix):].strip() if prefix else value
    tokens = rest.split(" ")
    if not rest:
        raise ValueRuleError(f"{value!r} has a prefix but no name")
    given = tokens[:-1] if len(tokens) > 1 else tokens
    family = tokens[-1] if len(tokens) > 1 else None
    canonical_prefix = _PREFIX_TEXT.get(prefix_code or "", prefix) if prefix else None
    return {
        "prefix": canonical_prefix,
        "prefix_code": prefix_code,
        "gender": gender,
        "given": given,
        "family": family,
        "text": f"{canonical_prefix or ''}{rest}",
    }


def split_prefix(value: str) -> tuple[str | None, str | None, str | None]:
    """The prefix at the start of a name (as written), its DOPA code and the gender it implies."""
    for written, prefix_code, gender in _PREFIXES:
        if value.startswith(written):
            rest = value[len(written):]
            # "นาง" must not swallow the start of a given name such as "นางฟ้า" without a space or dot.
            if written[-1] != "." and rest and not rest.startswith(" ") and written in ("นาย", "นาง"):
                continue
            return written, prefix_code, gender
    return None, None, None


def prefix_code(raw: Any, args: dict[str, Any]) -> str | None:
    """A DOPA prefix code, from a code (``1`` → ``001``) or from its written form (``ด.ญ.``)."""
    value = _clean(raw)
    if value is None:
        return None
    if thai_digits(value).isdigit():
        return code(value, {"width": 3})
    found = split_prefix(value)
    if found[1] is None:
        raise ValueRuleError(f"unknown name prefix {value!r}")
    return found[1]


def prefix_text(raw: Any, args: dict[str, Any]) -> str | None:
    """The written prefix for a DOPA prefix code (001 → ด.ช.); codes we cannot spell give no value."""
    value = code(raw, {"width": 3})
    return _PREFIX_TEXT.get(value or "")


def admin_area(raw: Any, args: dict[str, Any]) -> dict[str, str] | None:
    """A DOPA area code checked against the real list; ``{"code", "name"}`` (Thai name).

    ``raw`` is the code already joined (2 digits province, 4 district, 6 subdistrict). Codes made of the
    43-file "unknown" parts (99, 00) give no value.
    """
    value = _clean(raw)
    if value is None:
        return None
    value = thai_digits(value).replace(" ", "")
    if not value.isdigit() or len(value) not in (2, 4, 6):
        raise ValueRuleError(f"{value!r} is not a DOPA area code")
    if value[-2:] in ("99", "00"):
        return None
    finder = {2: geothai.province, 4: geothai.district, 6: geothai.subdistrict}[len(value)]
    area = finder(value)
    if area is None:
        raise ValueRuleError(f"{value} is not a DOPA area code")
    name = area.name_th
    if len(value) == 4 and name.startswith("เขต"):
        name = name[3:]
    found: dict[str, str] = {"code": value, "name": name}
    postal_codes = getattr(area, "postal_codes", ())
    if postal_codes:
        found["postal"] = postal_codes[0]
    if len(value) >= 4:
        found["province"] = value[:2]
    if len(value) == 6:
        found["district"] = value[:4]
    return found


def boolean(raw: Any, args: dict[str, Any]) -> bool | None:
    if isinstance(raw, bool):
        return raw
    value = _clean(raw)
    if value is None:
        return None
    lowered = thai_digits(value).lower()
    if lowered in {"1", "y", "yes", "true", "ใช่", "มี", "ยินยอม", "✓"}:
        return True
    if lowered in {"0", "2", "n", "no", "false", "ไม่ใช่", "ไม่มี", "ไม่ยินยอม"}:
        return False
    raise ValueRuleError(f"{value!r} is not yes or no")


def key(raw: Any, args: dict[str, Any]) -> str | None:
    """A short stable key from several values (for records without a business number)."""
    if raw is None or raw == "" or raw == []:
        return None
    joined = "|".join("" if v is None else str(v) for v in (raw if isinstance(raw, list) else [raw]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()[:16]


def passthrough(raw: Any, args: dict[str, Any]) -> Any:
    """The value as read (lists and objects from JSON records)."""
    if raw is None or raw == "" or raw == [] or raw == {}:
        return None
    return raw


RULES: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "text": text,
    "code": code,
    "digits": digits,
    "cid": cid,
    "gcode": gcode,
    "person_id": person_id,
    "date": date_rule,
    "datetime": datetime_rule,
    "decimal": decimal,
    "integer": integer,
    "phone": phone,
    "thai_name": thai_name,
    "prefix_code": prefix_code,
    "prefix_text": prefix_text,
    "admin_area": admin_area,
    "boolean": boolean,
    "key": key,
    "raw": passthrough,
}


def worst(raw: Any, args: dict[str, Any]) -> Any:
    """The worst of several results, by ``args["order"]`` (best first); values outside it are errors."""
    values = [v for v in (raw or []) if v not in (None, "")]
    if not values:
        return None
    order = list(args["order"])
    ranks = []
    for value in values:
        code_value = value.get("code") if isinstance(value, dict) else value
        if code_value not in order:
            raise ValueRuleError(f"{code_value!r} is not one of {', '.join(order)}")
        ranks.append(order.index(code_value))
    return values[ranks.index(max(ranks))]


def first(raw: Any, args: dict[str, Any]) -> Any:
    """The first of several values that is present."""
    return next((v for v in (raw or []) if v not in (None, "", [], {})), None)


RULES["worst"] = worst
RULES["first"] = first


def icd10(raw: Any, args: dict[str, Any]) -> str | None:
    """An ICD-10(-TM) code as FHIR writes it: ``E440`` and ``e44.0`` both become ``E44.0``."""
    value = _clean(raw)
    if value is None:
        return None
    value = value.replace(".", "").replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]\d{2}[0-9A-Z]{0,4}", value):
        raise ValueRuleError(f"{value!r} is not an ICD-10 code")
    return value if len(value) == 3 else f"{value[:3]}.{value[3:]}"


def age_years(raw: Any, args: dict[str, Any]) -> int | None:
    """Whole years between two ISO dates ``[birth, at]``; no ``at`` means today."""
    birth, at = [*list(raw or []), None, None][:2]
    if not birth:
        return None
    born = date.fromisoformat(str(birth)[:10])
    when = date.fromisoformat(str(at)[:10]) if at else date.today()
    return when.year - born.year - ((when.month, when.day) < (born.month, born.day))


def below(raw: Any, args: dict[str, Any]) -> bool | None:
    """True when a number is below ``limit`` (used to pick child-only profiles), else no value."""
    if raw is None:
        return None
    return True if raw < args["limit"] else None


RULES["icd10"] = icd10
RULES["age_years"] = age_years
RULES["below"] = below


def items(raw: Any, args: dict[str, Any]) -> list[dict[str, Any]] | None:
    """An object as a list of ``{"key", "value"}`` (so ``$each`` can walk a JSON object's members)."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ValueRuleError("expected an object")
    return [{"key": k, "value": v} for k, v in raw.items()]


RULES["items"] = items


# --- pregnancy and birth (43-file PRENATAL, ANC, LABOR, POSTNATAL, NEWBORN, NEWBORNCARE) --------------


def time_of_day(raw: Any, args: dict[str, Any]) -> str | None:
    """``HHMMSS`` (or ``HHMM``, ``HH:MM[:SS]``) as ``HH:MM:SS``."""
    value = _clean(raw)
    if value is None:
        return None
    value = thai_digits(value).replace(":", "").replace(".", "")
    if not re.fullmatch(r"\d{4}|\d{6}", value):
        raise ValueRuleError(f"{value!r} is not a time (HHMMSS)")
    hh, mm, ss = int(value[:2]), int(value[2:4]), int(value[4:6] or 0)
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueRuleError(f"{value!r} is not a real time")
    return f"{hh:02d}:{mm:02d}:{ss:02d}"


def date_time(raw: Any, args: dict[str, Any]) -> str | None:
    """``[date, time]`` (ISO date, ``HH:MM:SS``) as a FHIR dateTime in Bangkok time; the date alone when
    the time is unknown."""
    day, time = [*list(raw or []), None, None][:2]
    if not day:
        return None
    return f"{day}T{time}{args.get('tz', '+07:00')}" if time else str(day)


def weeks_between(raw: Any, args: dict[str, Any]) -> int | None:
    """Completed weeks from the first ISO date to the second (range and plausibility as ``integer``)."""
    start, end = [*list(raw or []), None, None][:2]
    if not start or not end:
        return None
    days = (date.fromisoformat(str(end)[:10]) - date.fromisoformat(str(start)[:10])).days
    return integer(days // 7, args)


def not_before(raw: Any, args: dict[str, Any]) -> Any:
    """``[later, earlier]``: the later value, or an error (``reason`` with {0}, {1}) when it comes first
    (with ``drop``: no value)."""
    later, earlier = [*list(raw or []), None, None][:2]
    if later and earlier and str(later)[:10] < str(earlier)[:10]:
        if args.get("drop"):  # another table's value, rejected there: not carried over here
            return None
        raise ValueRuleError(args["reason"].format(later, earlier))
    return later


def warn_unless_equal(raw: Any, args: dict[str, Any]) -> Any:
    """``[a, b]``: ``a``, with a warning (``reason`` with {0}, {1}) when both are known and differ."""
    first_value, second = [*list(raw or []), None, None][:2]
    if first_value not in (None, "") and second not in (None, "") and first_value != second:
        raise ValueRuleWarning(args["reason"].format(first_value, second), first_value)
    return first_value


def newborn_id(raw: Any, args: dict[str, Any]) -> str | None:
    """``[mother's CID, birth date, birth order]`` as the temporary identifier of a newborn without a
    CID: ``<CID>-<YYYYMMDD>-<order>`` (see ``canonical.NEWBORN_ID_SYSTEM``)."""
    mother, born, order = [*list(raw or []), None, None, None][:3]
    if not mother or not born or not order:
        return None
    return f"{mother}-{str(born)[:10].replace('-', '')}-{order}"


def pregnancy_status(raw: Any, args: dict[str, Any]) -> str | None:
    """``[LMP, as of]``: ``finished`` once more than ``weeks`` (default 44) have passed since the LMP (the
    pregnancy has ended, wherever), else ``active``."""
    lmp, as_of = [*list(raw or []), None, None][:2]
    if not lmp:
        return None
    when = date.fromisoformat(str(as_of)[:10]) if as_of else date.today()
    passed = (when - date.fromisoformat(str(lmp)[:10])).days / 7
    return "finished" if passed > float(args.get("weeks", 44)) else "active"


RULES.update(
    {
        "time": time_of_day,
        "date_time": date_time,
        "weeks_between": weeks_between,
        "not_before": not_before,
        "warn_unless_equal": warn_unless_equal,
        "newborn_id": newborn_id,
        "pregnancy_status": pregnancy_status,
    }
)
