"""Value normalisation shared by index extraction and query parsing, so both sides agree exactly."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

UCUM = "http://unitsofmeasure.org"

# Combining marks that are accents on Latin/Greek/Cyrillic letters. Thai vowel and tone marks are
# combining characters too but carry meaning, so only these blocks are stripped.
_ACCENT_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))


_ACCENTS = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _ACCENT_RANGES) + "]")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Case- and accent-insensitive form used for string matching (Thai kept apart from NFKD)."""
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed.isascii():
        return decomposed.lower()
    return _ACCENTS.sub("", decomposed).casefold()


# --- dates -----------------------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})"
    r"(?:\.(?P<f>\d+))?)?)?(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = -62135596800000  # 0001-01-01
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


def _tz(tz: str | None) -> timedelta:
    if not tz or tz == "Z":
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))


@lru_cache(maxsize=65536)
def _later(moment: datetime, step: timedelta) -> datetime | None:
    """``moment + step``, or None (no upper bound) past the end of year 9999."""
    try:
        return moment + step
    except OverflowError:
        return None


def date_range(value: str) -> tuple[int, int] | None:
    """Inclusive [low, high] in epoch milliseconds (UTC) covered by a FHIR date/dateTime/instant.

    Partial dates cover their whole year/month/day; a dateTime without seconds its whole minute.
    Values without a zone are taken as UTC. None when the text is not a valid date.
    """
    m = _DATE_RE.match(value.strip())
    if not m:
        return None
    try:
        y = int(m["y"])
        if m["m"] is None:
            lo = datetime(y, 1, 1, tzinfo=UTC)
            hi = datetime(y + 1, 1, 1, tzinfo=UTC) if y < 9999 else None
        elif m["d"] is None:
            mo = int(m["m"])
            lo = datetime(y, mo, 1, tzinfo=UTC)
            hi = (
                datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC) if not (y == 9999 and mo == 12) else None
            )
        elif m["H"] is None:
            lo = datetime(y, int(m["m"]), int(m["d"]), tzinfo=UTC)
            hi = _later(lo, timedelta(days=1))
        else:
            if m["M"] is None:
                return None
            base = datetime(y, int(m["m"]), int(m["d"]), int(m["H"]), int(m["M"]), tzinfo=UTC)
            if m["S"] is None:
                lo, step = base, timedelta(minutes=1)
            else:
                frac = m["f"] or ""
                micro = int((frac + "000000")[:6]) if frac else 0
                lo = base + timedelta(seconds=int(m["S"]), microseconds=micro)
                step = timedelta(milliseconds=1) if frac else timedelta(seconds=1)
            off = _tz(m["tz"])
            lo = lo - off
            hi = _later(lo, step)
    except (ValueError, OverflowError):
        return None
    low = _ms(lo)
    high = _ms(hi) - 1 if hi is not None else MAX_MS
    return low, high


def ms_to_instant(ms: int) -> str:
    """Epoch milliseconds as the store's ``last_updated`` text form (UTC, millisecond precision).

    Clamped to years 1-9999: a search bound widened past them (``ap`` on year 1) means "no bound"."""
    dt = _EPOCH + timedelta(milliseconds=min(max(int(ms), MIN_MS), MAX_MS))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def now_ms() -> int:
    return _ms(datetime.now(UTC))


# --- numbers ---------------------------------------------------------------------------------------


def parse_decimal(text: str) -> Decimal | None:
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def implicit_range(text: str) -> tuple[Decimal, Decimal, Decimal] | None:
    """(value, low, high) where low/high are the bounds implied by the significant figures written."""
    d = parse_decimal(text)
    if d is None:
        return None
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal(5).scaleb(exp - 1)
    return d, d - half, d + half


# --- quantities ------------------------------------------------------------------------------------

# Trivially convertible UCUM units: unit -> (canonical unit, factor). Approximate units (months,
# years) are left alone on purpose.
_UCUM_FACTORS: dict[str, tuple[str, float]] = {
    "kg": ("g", 1000.0),
    "g": ("g", 1.0),
    "mg": ("g", 1e-3),
    "ug": ("g", 1e-6),
    "ng": ("g", 1e-9),
    "km": ("m", 1000.0),
    "m": ("m", 1.0),
    "cm": ("m", 0.01),
    "mm": ("m", 1e-3),
    "um": ("m", 1e-6),
    "[in_i]": ("m", 0.0254),
    "[ft_i]": ("m", 0.3048),
    "L": ("L", 1.0),
    "l": ("L", 1.0),
    "dL": ("L", 0.1),
    "cL": ("L", 0.01),
    "mL": ("L", 1e-3),
    "uL": ("L", 1e-6),
    "s": ("s", 1.0),
    "ms": ("s", 1e-3),
    "min": ("s", 60.0),
    "h": ("s", 3600.0),
    "d": ("s", 86400.0),
    "wk": ("s", 604800.0),
    "[lb_av]": ("g", 453.59237),
    "[oz_av]": ("g", 28.349523125),
    "g/L": ("g/L", 1.0),
    "mg/dL": ("g/L", 0.01),
    "g/dL": ("g/L", 10.0),
    "mg/L": ("g/L", 1e-3),
    "kg/m2": ("kg/m2", 1.0),
    "mm[Hg]": ("mm[Hg]", 1.0),
    "%": ("%", 1.0),
}


def canonical_unit(system: str | None, code: str | None) -> tuple[str, float] | None:
    """The canonical UCUM unit and the factor to reach it, when the conversion is trivial."""
    if system != UCUM or not code:
        return None
    return _UCUM_FACTORS.get(code)
