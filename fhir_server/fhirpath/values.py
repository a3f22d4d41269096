"""FHIRPath's System values that Python lacks: Date, DateTime, Time (with precision and offset) and
Quantity (with UCUM and calendar units).

Comparison follows FHIRPath 2.0 (N1) §6.1/§6.3: values compare component by component up to the
coarser precision; when they agree that far but their precisions differ the answer is empty (None
here); seconds and milliseconds are one precision; offsets are normalised to UTC, and a value without
an offset against one with an offset is not comparable.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from fhir_server.fhirpath import ucum


class FhirPathError(ValueError):
    """An expression that cannot be parsed, typed or evaluated."""


# -- dates and times ---------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?)?)?"
    r"(?:T)?(Z|[+-]\d{2}:\d{2})?$"
)
_TIME = re.compile(r"^(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")
# precision names, coarsest first; seconds carry their fraction
_UNITS = ("year", "month", "day", "hour", "minute", "second")


def _offset(text: str | None) -> int | None:
    if text is None:
        return None
    if text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    return sign * (int(text[1:3]) * 60 + int(text[4:6]))


def _show_offset(minutes: int | None) -> str:
    if minutes is None:
        return ""
    if minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class Temporal:
    """A Date, DateTime or Time: the components known (None beyond the precision)."""

    kind: str  # "Date" | "DateTime" | "Time"
    parts: tuple[int | None, ...]  # year, month, day, hour, minute (Time: None, None, None, h, m)
    second: Decimal | None
    offset: int | None  # minutes east of UTC
    fraction_digits: int  # digits written after the seconds' point (precision())

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def date(text: str) -> Temporal | None:
        m = _DATE.match(text)
        if not m:
            return None
        y, mo, d = (int(g) if g else None for g in m.groups())
        if not _valid(y, mo, d):
            return None
        return Temporal("Date", (y, mo, d, None, None), None, None, 0)

    @staticmethod
    def datetime(text: str) -> Temporal | None:
        m = _DATETIME.match(text)
        if not m:
            return None
        y, mo, d, h, mi, s, frac, tz = m.groups()
        if tz and h is None:
            return None  # an offset needs a time
        parts = tuple(int(g) if g else None for g in (y, mo, d, h, mi))
        if not _valid(*parts[:3]) or (parts[3] is not None and parts[3] > 23) or (parts[4] or 0) > 59:
            return None
        second = Decimal(f"{s}.{frac}") if s and frac else (Decimal(s) if s else None)
        if second is not None and second >= 61:
            return None
        return Temporal("DateTime", parts, second, _offset(tz), len(frac or ""))

    @staticmethod
    def time(text: str) -> Temporal | None:
        m = _TIME.match(text)
        if not m:
            return None
        h, mi, s, frac = m.groups()
        if int(h) > 23 or (mi and int(mi) > 59) or (s and int(s) > 59):
            return None
        second = Decimal(f"{s}.{frac}") if s and frac else (Decimal(s) if s else None)
        return Temporal(
            "Time", (None, None, None, int(h), int(mi) if mi else None), second, None, len(frac or "")
        )

    @staticmethod
    def from_fhir(type_code: str, text: str) -> Temporal | None:
        if type_code == "date":
            return Temporal.date(text)
        if type_code in ("dateTime", "instant"):
            return Temporal.datetime(text)
        if type_code == "time":
            return Temporal.time(text)
        return None

    # -- facts -------------------------------------------------------------------------------------
    def units(self) -> list[tuple[str, Any]]:
        """(unit, value) of every component present, coarsest first."""
        names = _UNITS[3:] if self.kind == "Time" else _UNITS
        values = (*self.parts[3:], self.second) if self.kind == "Time" else (*self.parts, self.second)
        return [(n, v) for n, v in zip(names, values, strict=True) if v is not None]

    def precision_digits(self) -> int:
        """FHIRPath ``precision()``: the number of digits of the representation."""
        units = [n for n, _v in self.units()]
        digits = {"year": 4, "month": 6, "day": 8, "hour": 10, "minute": 12, "second": 14}
        if self.kind == "Time":
            digits = {"hour": 2, "minute": 4, "second": 6}
        return digits[units[-1]] + self.fraction_digits

    def __str__(self) -> str:
        y, mo, d, h, mi = self.parts
        out = ""
        if self.kind != "Time":
            out = f"{y:04d}"
            if mo is not None:
                out += f"-{mo:02d}"
            if d is not None:
                out += f"-{d:02d}"
            if self.kind == "DateTime" and h is not None:
                out += "T"
        if h is not None:
            out += f"{h:02d}"
            if mi is not None:
                out += f":{mi:02d}"
            if self.second is not None:
                whole = int(self.second)
                out += f":{whole:02d}"
                if self.fraction_digits:
                    frac = self.second - whole
                    out += "." + f"{frac:.{self.fraction_digits}f}"[2:]
        if self.kind == "DateTime" and h is not None:
            out += _show_offset(self.offset)
        return out

    # -- comparison --------------------------------------------------------------------------------
    def _utc(self) -> Temporal:
        """The same instant with offset 0 (a DateTime with an hour and an offset)."""
        if self.kind != "DateTime" or self.offset in (None, 0) or self.parts[3] is None:
            return self
        y, mo, d, h, mi = self.parts
        stamp = datetime(y, mo or 1, d or 1, h, mi or 0, tzinfo=UTC) - timedelta(minutes=self.offset or 0)
        parts = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute if mi is not None else None)
        return Temporal("DateTime", parts, self.second, 0, self.fraction_digits)

    def compare(self, other: Temporal) -> int | None:
        """-1/0/1, or None when the answer depends on unknown components (or offsets)."""
        a, b = self, other
        if a.kind == "Time" or b.kind == "Time":
            if a.kind != b.kind:
                raise FhirPathError(f"Cannot compare {a.kind} with {b.kind}")
        elif (
            a.kind == "DateTime"
            and b.kind == "DateTime"
            and a.parts[3] is not None
            and b.parts[3] is not None
        ):
            if (a.offset is None) != (b.offset is None):
                return None
            a, b = a._utc(), b._utc()
        ua, ub = a.units(), b.units()
        for (_na, va), (_nb, vb) in zip(ua, ub, strict=False):
            if va != vb:
                return -1 if va < vb else 1
        return 0 if len(ua) == len(ub) else None

    def equivalent(self, other: Temporal) -> bool:
        if len(self.units()) != len(other.units()):
            return False
        try:
            return self.compare(other) == 0
        except FhirPathError:
            return False

    # -- arithmetic --------------------------------------------------------------------------------
    def add(self, quantity: Quantity, sign: int = 1) -> Temporal:
        """``self + quantity`` (FHIRPath §6.6.1): calendar arithmetic keeping precision and offset; the
        fraction of the quantity's unit is dropped, and a Date moves by whole days at least."""
        unit = ucum.calendar_unit(quantity.unit)
        if unit is None:
            raise FhirPathError(f"Cannot add {quantity} to a {self.kind}: not a time-valued quantity")
        amount = int(quantity.value) * sign
        if unit == "week":
            amount, unit = amount * 7, "day"
        if self.kind == "Date" and unit in ("hour", "minute", "second", "millisecond"):
            per_day = {"hour": 24, "minute": 1440, "second": 86400, "millisecond": 86400000}[unit]
            amount, unit = int(amount / per_day), "day"
        y, mo, d, h, mi = self.parts
        if unit in ("year", "month"):
            if self.kind == "Time":
                raise FhirPathError("Cannot add years or months to a Time")
            total = (y or 0) * 12 + ((mo or 1) - 1) + amount * (12 if unit == "year" else 1)
            y2, mo2 = divmod(total, 12)
            mo2 += 1
            d2 = None if d is None else min(d, calendar.monthrange(y2, mo2)[1])
            parts = (y2, None if mo is None else mo2, d2, h, mi)
            return Temporal(self.kind, parts, self.second, self.offset, self.fraction_digits)
        second = self.second or Decimal(0)
        whole = int(second)
        micro = int((second - whole) * 1_000_000)
        base = datetime(y or 2000, mo or 1, d or 1, h or 0, mi or 0, whole, micro)
        step = {"day": timedelta(days=1), "hour": timedelta(hours=1), "minute": timedelta(minutes=1),
                "second": timedelta(seconds=1), "millisecond": timedelta(milliseconds=1)}[unit]  # fmt: skip
        moved = base + step * amount
        digits = self.fraction_digits
        if unit == "millisecond" and self.second is not None:
            digits = max(digits, 3)
        new_second = None
        if self.second is not None:
            new_second = Decimal(moved.second) + Decimal(moved.microsecond) / Decimal(1_000_000)
            if digits:
                new_second = new_second.quantize(Decimal(1).scaleb(-digits))
        parts = (
            None if self.kind == "Time" else moved.year,
            None if mo is None else moved.month,
            None if d is None else moved.day,
            None if h is None else moved.hour,
            None if mi is None else moved.minute,
        )
        return Temporal(self.kind, parts, new_second, self.offset, digits)

    # -- boundaries --------------------------------------------------------------------------------
    def boundary(self, high: bool, precision: int | None) -> Temporal | None:
        """``lowBoundary``/``highBoundary``: the earliest/latest value this one can stand for."""
        if self.kind == "Time":
            levels = {2: 1, 4: 2, 6: 3, 9: 4}
            default = 9
        else:
            levels = {4: 1, 6: 2, 8: 3, 10: 4, 12: 5, 14: 6, 17: 7}
            # FHIRPath: without a precision, the greatest precision of the input's type (a Date stays a
            # Date: 8 digits, YYYYMMDD; a DateTime gets 17, to the millisecond)
            default = 8 if self.kind == "Date" else 17
        p = default if precision is None else precision
        if p not in levels:
            return None
        count = levels[p]
        y, mo, d, h, mi = self.parts
        if self.kind == "DateTime" and h is not None and mi is None:
            mi = 0  # T08 is 08:00 in FHIR
        if self.kind == "Time":
            comps = [h, mi, self.second]
            fill_low = [0, 0, Decimal("0.000")]
            fill_high = [23, 59, Decimal("59.999")]
            out = []
            for i in range(min(count, 3)):
                out.append(comps[i] if comps[i] is not None else (fill_high if high else fill_low)[i])
            hh, mm = out[0], out[1] if len(out) > 1 else None
            sec = out[2] if len(out) > 2 else None
            digits = 3 if count == 4 else 0
            if sec is not None and count == 3:
                sec = Decimal(int(sec))
            return Temporal("Time", (None, None, None, hh, mm), sec, None, digits)
        year = y
        month = mo if mo is not None else (12 if high else 1)
        day = d if d is not None else (calendar.monthrange(year, month)[1] if high else 1)
        hour = h if h is not None else (23 if high else 0)
        minute = mi if mi is not None else (59 if high else 0)
        second = self.second if self.second is not None else (Decimal("59.999") if high else Decimal("0.000"))
        if count <= 3:
            parts = (year, month if count >= 2 else None, day if count >= 3 else None, None, None)
            return Temporal("Date", parts, None, None, 0)
        offset = self.offset if self.offset is not None else (-720 if high else 840)
        parts = (year, month, day, hour, minute if count >= 5 else None)
        sec = second if count >= 6 else None
        digits = 3 if count == 7 else 0
        if sec is not None and count == 6:
            sec = Decimal(int(sec))
        return Temporal("DateTime", parts, sec, offset, digits)


def _valid(y: int | None, mo: int | None, d: int | None) -> bool:
    if mo is not None and not 1 <= mo <= 12:
        return False
    if d is not None:
        return y is not None and mo is not None and 1 <= d <= calendar.monthrange(y, mo)[1]
    return True


# -- quantities --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal
    unit: str  # UCUM code, or a calendar duration word (year, month, ..., millisecond)

    def __str__(self) -> str:
        if ucum.is_calendar_word(self.unit):
            return f"{_show_decimal(self.value)} {self.unit}"
        return f"{_show_decimal(self.value)} '{self.unit}'"

    def _converted(self, other: Quantity) -> tuple[Decimal, Decimal] | None:
        """Both values in one unit, or None when the units are not comparable."""
        if self.unit == other.unit:
            return self.value, other.value
        a = ucum.canonical(self.unit)
        b = ucum.canonical(other.unit)
        if a is None or b is None or a[1] != b[1]:
            return None
        return self.value * a[0], other.value * b[0]

    def compare(self, other: Quantity) -> int | None:
        both = self._converted(other)
        if both is None:
            return None
        x, y = both
        return (x > y) - (x < y)

    def equivalent(self, other: Quantity) -> bool:
        both = self._converted(other)
        if both is None:
            return False
        x, y = both
        digits = min(_scale(self.value), _scale(other.value))
        scale = ucum.canonical(self.unit)
        if scale is not None and scale[0] != 1:  # compare at the coarser written precision, in self's unit
            x, y = x / scale[0], y / scale[0]
        step = Decimal(1).scaleb(-digits)
        return x.quantize(step, rounding=ROUND_FLOOR) == y.quantize(step, rounding=ROUND_FLOOR) or x == y

    def comparable(self, other: Quantity) -> bool:
        return self._converted(other) is not None

    def multiply(self, other: Quantity, divide: bool = False) -> Quantity:
        a, b = ucum.canonical(self.unit), ucum.canonical(other.unit)
        if a is None or b is None:
            raise FhirPathError(f"Cannot {'divide' if divide else 'multiply'} {self} and {other}")
        if divide:
            if other.value == 0:
                raise ZeroDivisionError
            value = (self.value * a[0]) / (other.value * b[0])
            dims = ucum.combine(a[1], b[1], -1)
        else:
            value = (self.value * a[0]) * (other.value * b[0])
            dims = ucum.combine(a[1], b[1], 1)
        return Quantity(value, ucum.show(dims))


def _scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _show_decimal(value: Decimal) -> str:
    return str(value)


def decimal_of(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def decimal_boundary(value: Decimal, high: bool, precision: int | None) -> Decimal | None:
    """``lowBoundary``/``highBoundary`` of a decimal: the range its written digits stand for."""
    p = 8 if precision is None else precision
    if p < 0 or p > 28:
        return None
    s = _scale(value)
    half = Decimal(5).scaleb(-(s + 1))
    edge = value + half if high else value - half
    step = Decimal(1).scaleb(-p)
    if p > s:
        return edge.quantize(step)
    if abs(value) < step:  # below the requested precision: zero, with the value's sign
        return Decimal(0).quantize(step).copy_sign(value)
    return edge.quantize(step, rounding=ROUND_CEILING if high else ROUND_FLOOR)
