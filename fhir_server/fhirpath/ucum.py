"""Enough UCUM for FHIRPath quantities: conversion of the common clinical units to base units.

A unit is parsed into (factor, dimensions): metric atoms with their SI prefixes, the customary units
clinical data uses (inches, feet, pounds, ounces), time units, litres, percent, mm[Hg], annotations
(``{score}``, dimensionless) and products/quotients with exponents (``kg/m2``, ``mL/min/{1.73_m2}``).
Units outside this table are comparable only with themselves. FHIRPath's calendar durations
(``year``, ``month``, ``week``, ``day``, ...) are kept apart from UCUM's definite ``a`` and ``mo``:
FHIRPath says ``1 year`` is not ``1 'a'`` (§5.6.1, "Time-valued quantities").
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

Dims = tuple[tuple[str, int], ...]

_PREFIXES = {
    "Y": Decimal("1e24"), "Z": Decimal("1e21"), "E": Decimal("1e18"), "P": Decimal("1e15"),
    "T": Decimal("1e12"), "G": Decimal("1e9"), "M": Decimal("1e6"), "k": Decimal("1e3"),
    "h": Decimal("1e2"), "da": Decimal("1e1"), "d": Decimal("1e-1"), "c": Decimal("1e-2"),
    "m": Decimal("1e-3"), "u": Decimal("1e-6"), "n": Decimal("1e-9"), "p": Decimal("1e-12"),
    "f": Decimal("1e-15"), "a": Decimal("1e-18"),
}  # fmt: skip
# atom -> (factor, dimensions, takes SI prefixes)
_ATOMS: dict[str, tuple[Decimal, dict[str, int], bool]] = {
    "m": (Decimal(1), {"m": 1}, True),
    "g": (Decimal(1), {"g": 1}, True),
    "s": (Decimal(1), {"s": 1}, True),
    "L": (Decimal("0.001"), {"m": 3}, True),
    "l": (Decimal("0.001"), {"m": 3}, True),
    "mol": (Decimal(1), {"mol": 1}, True),
    "K": (Decimal(1), {"K": 1}, True),
    "A": (Decimal(1), {"A": 1}, True),
    "Pa": (Decimal(1000), {"g": 1, "m": -1, "s": -2}, True),
    "Hz": (Decimal(1), {"s": -1}, True),
    "U": (Decimal(1), {"U": 1}, True),
    "[iU]": (Decimal(1), {"[iU]": 1}, False),
    "[IU]": (Decimal(1), {"[iU]": 1}, False),
    "eq": (Decimal(1), {"eq": 1}, True),
    "min": (Decimal(60), {"s": 1}, False),
    "h": (Decimal(3600), {"s": 1}, False),
    "d": (Decimal(86400), {"s": 1}, False),
    "wk": (Decimal(604800), {"s": 1}, False),
    "mo": (Decimal("2629800"), {"s": 1}, False),
    "a": (Decimal("31557600"), {"s": 1}, False),
    "[in_i]": (Decimal("0.0254"), {"m": 1}, False),
    "[ft_i]": (Decimal("0.3048"), {"m": 1}, False),
    "[lb_av]": (Decimal("453.59237"), {"g": 1}, False),
    "[oz_av]": (Decimal("28.349523125"), {"g": 1}, False),
    "%": (Decimal("0.01"), {}, False),
    "1": (Decimal(1), {}, False),
    "mm[Hg]": (Decimal("133322.387415"), {"g": 1, "m": -1, "s": -2}, False),
    "[pH]": (Decimal(1), {"[pH]": 1}, False),
}
# FHIRPath calendar duration words -> (factor, dimensions): years and months are calendar months
_CALENDAR = {
    "year": (Decimal(12), {"cal_month": 1}),
    "month": (Decimal(1), {"cal_month": 1}),
    "week": (Decimal(604800), {"s": 1}),
    "day": (Decimal(86400), {"s": 1}),
    "hour": (Decimal(3600), {"s": 1}),
    "minute": (Decimal(60), {"s": 1}),
    "second": (Decimal(1), {"s": 1}),
    "millisecond": (Decimal("0.001"), {"s": 1}),
}
_UCUM_CALENDAR = {"d": "day", "wk": "week", "h": "hour", "min": "minute", "s": "second", "ms": "millisecond"}
_TERM = re.compile(r"(\{[^}]*\}|\[[^\]]*\]|[A-Za-z%]+(?:\[[A-Za-z]+\])?|1)(-?\d+)?")


def calendar_word(unit: str) -> str | None:
    """The FHIRPath calendar duration a unit written as a word names ("days" -> "day")."""
    word = unit[:-1] if unit.endswith("s") and unit[:-1] in _CALENDAR else unit
    return word if word in _CALENDAR else None


def is_calendar_word(unit: str) -> bool:
    return calendar_word(unit) is not None


def calendar_unit(unit: str) -> str | None:
    """The calendar unit date arithmetic uses for ``unit`` (None: not usable with dates, e.g. 'mo')."""
    return calendar_word(unit) or _UCUM_CALENDAR.get(unit)


def _atom(text: str) -> tuple[Decimal, dict[str, int]] | None:
    hit = _ATOMS.get(text)
    if hit is not None:
        return hit[0], hit[1]
    for size in (2, 1):
        prefix, rest = text[:size], text[size:]
        if prefix in _PREFIXES and rest in _ATOMS and _ATOMS[rest][2]:
            factor, dims, _ = _ATOMS[rest]
            return _PREFIXES[prefix] * factor, dims
    return None


@cache
def canonical(unit: str) -> tuple[Decimal, Dims] | None:
    """(factor to base units, dimensions) of a UCUM unit or calendar word; None when unknown."""
    word = calendar_word(unit)
    if word is not None:
        factor, dims = _CALENDAR[word]
        return factor, tuple(sorted(dims.items()))
    text = unit.strip()
    if not text:
        return None
    factor = Decimal(1)
    dims: dict[str, int] = {}
    sign = 1
    pos = 0
    if text.startswith("/"):
        sign, pos = -1, 1
    while pos < len(text):
        m = _TERM.match(text, pos)
        if not m:
            return None
        atom, exponent = m.group(1), int(m.group(2) or 1)
        pos = m.end()
        if atom.startswith("{"):
            part: tuple[Decimal, dict[str, int]] | None = (Decimal(1), {})
        elif atom.isdigit():
            part = (Decimal(atom), {})
        else:
            part = _atom(atom)
        if part is None:
            return None
        f, d = part
        factor *= f ** (exponent * sign)
        for base, power in d.items():
            dims[base] = dims.get(base, 0) + power * exponent * sign
        if pos < len(text):
            if text[pos] == ".":
                sign = 1
            elif text[pos] == "/":
                sign = -1
            else:
                return None
            pos += 1
    return factor, tuple(sorted((k, v) for k, v in dims.items() if v))


def combine(a: Dims, b: Dims, sign: int) -> Dims:
    out = dict(a)
    for base, power in b:
        out[base] = out.get(base, 0) + power * sign
    return tuple(sorted((k, v) for k, v in out.items() if v))


def show(dims: Dims) -> str:
    """A UCUM unit for base dimensions ("m2", "g/m", "1")."""
    up = [f"{b}{p if p != 1 else ''}" for b, p in dims if p > 0]
    down = [f"{b}{-p if p != -1 else ''}" for b, p in dims if p < 0]
    text = ".".join(up) or "1"
    return text + "".join(f"/{d}" for d in down)
