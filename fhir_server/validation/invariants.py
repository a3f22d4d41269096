"""FHIRPath invariants: compiled once per expression (``fhir_server.fhirpath``), evaluated per element.

Two invariants every element carries (``ele-1``, ``ext-1``) are checked natively by the walker: they
run on every element of every resource. A base R4 invariant the specification itself gets wrong is
listed in ``SKIPPED`` with the reason, and never evaluated.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_server import fhirpath
from fhir_server.validation.model import Constraint

# Checked natively by the walker (same meaning, no FHIRPath engine needed).
NATIVE = frozenset({"ele-1", "ext-1", "dom-3", "txt-1", "txt-2"})
# dom-3 (contained resources must be referenced) is native because its R4 expression applies ``as()`` to a
# collection (``descendants().as(canonical)``), which FHIRPath forbids.
# txt-1/txt-2 (``htmlChecks()``, narrative XHTML) are checked by ``narrative.check`` on every xhtml value.

# key -> why it is not evaluated. Keys are global in R4 core, so the key alone identifies the rule.
SKIPPED: dict[str, str] = {
    "que-7": "'answer is Boolean' names the System type, but a FHIR boolean is FHIR.boolean, so "
    "the rule fails on valid data (e.g. the R4 example Questionnaire/bb)",
}

# Our own invariants on hot paths, in Python: the same rule as the profile's FHIRPath (which stays the
# published definition), much cheaper than running it through the FHIRPath engine on every
# growth Observation. tests/validation/test_native_invariants.py proves both agree.
_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"
_GROWTH_UNITS = {
    "29463-7": ("kg", "g"),
    "8302-2": ("cm",),
    "8306-3": ("cm",),
    "9843-4": ("cm",),
    "39156-5": ("kg/m2",),
}


def _loinc_codes(data: dict[str, Any]) -> list[str | None]:
    code = data.get("code")
    codings = code.get("coding", []) if isinstance(code, dict) else []
    listed = codings if isinstance(codings, list) else []
    return [
        c["code"]
        for c in listed
        if isinstance(c, dict) and c.get("system") == _LOINC and isinstance(c.get("code"), str)
    ]


def _growth_code(data: Any) -> bool:
    return isinstance(data, dict) and any(c in _GROWTH_UNITS for c in _loinc_codes(data))


def _and3(values: list[bool | None]) -> bool | None:
    """FHIRPath's three-valued ``and``: false wins, then empty (None), then true."""
    if False in values:
        return False
    return None if None in values else True


def _growth_unit(data: Any) -> bool:
    """th-growth-2 with FHIRPath's empty-propagation: a missing system or unit yields empty, which passes."""
    if not isinstance(data, dict):
        return True
    value = next((v for k, v in data.items() if k.startswith("value") and k[5:6].isupper()), None)
    if value is None:
        return True
    fields = value if isinstance(value, dict) else {}
    system, unit = fields.get("system"), fields.get("code")
    loinc = _loinc_codes(data)
    parts: list[bool | None] = [None if system is None else system == _UCUM]
    for code, units in _GROWTH_UNITS.items():
        if code in loinc:  # (code present) implies (unit is one of these)
            parts.append(None if unit is None else unit in units)
    return _and3(parts) is not False


NATIVE_RULES: dict[str, Callable[[Any], bool]] = {"th-growth-1": _growth_code, "th-growth-2": _growth_unit}

_THIRTEEN_DIGITS = re.compile(r"[0-9]{13}", re.ASCII)


def _thai_citizen_id(data: Any, _type_path: str) -> bool | None:
    """th-cid-1: a 13-digit Thai citizen id whose last digit is its check digit (None: ask FHIRPath).

    The published rule is ``value.matches('^[0-9]{13}$') and (11 - (sum of the first twelve digits
    weighted 13..2) mod 11) mod 10 = the thirteenth digit``. With no value every operand is empty, and
    an empty result passes.
    """
    if not isinstance(data, dict):
        return None
    value = data.get("value")
    if value is None:
        return None if "_value" in data else True
    if not isinstance(value, str):
        return None
    if _THIRTEEN_DIGITS.fullmatch(value) is None:
        return False
    weighted = sum(int(value[i]) * (13 - i) for i in range(12))
    return (11 - weighted % 11) % 10 == int(value[12])


# Rules of ours with a Python twin that may still defer to FHIRPath (None) on unusual input; like
# NATIVE_RULES, tests/validation/test_native_invariants.py proves they agree with the published rule.
NATIVE_SHORTCUTS: dict[str, Callable[[Any, str], bool | None]] = {"th-cid-1": _thai_citizen_id}

_resolver: contextvars.ContextVar[Callable[[str], dict[str, Any] | None] | None] = contextvars.ContextVar(
    "fhir_validation_resolver", default=None
)

_cache: dict[str, fhirpath.Expression | Exception] = {}


def _compiled(expression: str) -> fhirpath.Expression | Exception:
    hit = _cache.get(expression)
    if hit is None:
        try:
            hit = fhirpath.compile(expression)
        except fhirpath.FhirPathError as exc:  # an expression that is not valid FHIRPath
            hit = exc
        _cache[expression] = hit
    return hit


# Paths from a child element (lower-case first letter); one that starts with a type name
# (``Appointment.x.exists()``) means the resource itself and is left to FHIRPath.
_SIMPLE = re.compile(r"^([a-z][A-Za-z]*(?:\.`?[A-Za-z]+`?)*)\.(exists|empty)\(\)$")
_PURE = re.compile(r"^([a-z][A-Za-z]*)[.(].*\.(exists|empty)\(\)$")
_fast_cache: dict[str, Callable[[Any, str], bool | None] | None] = {}


@cache
def _choice_names() -> frozenset[str]:
    """Base names of every choice element in R4 ("value", "effective", ...): only these need a key scan."""
    from fhir_server import definitions

    return frozenset(
        e["path"].rsplit(".", 1)[-1][:-3]
        for sd in definitions.structure_definitions()
        for e in sd["elements"]
        if e["path"].endswith("[x]")
    )


def _absent(data: Any, name: str, type_path: str | None = None) -> bool | None:
    """True/False when ``name`` is surely absent/present on a JSON object; None when unsure (choice keys).

    With the ``type_path`` of ``data`` a choice element's JSON keys are known from the R4 model, so
    ``value`` on an Observation is present exactly when one of ``valueQuantity``, ``valueString``, ...
    is (a primitive's ``_`` companion alone stays unsure).
    """
    if not isinstance(data, dict):
        return None
    if name in data or "_" + name in data:
        return False
    if name not in _choice_names():
        return True
    keys = _choice_keys(type_path, name) if type_path else None
    if keys is not None:
        if not keys[0].isdisjoint(data):
            return False
        return True if keys[1].isdisjoint(data) else None
    n = len(name)
    if any(k.startswith(name) and len(k) > n and k[n].isupper() for k in data):
        return None
    return True


@cache
def _choice_keys(type_path: str, name: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """The JSON keys of the choice element ``name`` of the R4 element or type ``type_path`` and their
    ``_`` companions (or None)."""
    from fhir_server.validation.model import compiled_core

    sd = compiled_core(type_path.split(".", 1)[0])
    node = sd.by_id.get(type_path) if sd is not None else None
    child = node.children.get(name) if node is not None else None
    if node is None or child is None or not child.choice:
        return None
    keys = frozenset(key for key, (c, _code) in node.keys.items() if c is child)
    return keys, frozenset("_" + key for key in keys)


def _chain(path: list[str], data: Any, type_path: str | None = None) -> bool | None:
    """Does the simple path exist on ``data``? None when a choice-typed key makes it uncertain."""
    if len(path) == 1:
        gone = _absent(data, path[0], type_path)
        return None if gone is None else not gone
    current = [data]
    for name in path:
        nxt: list[Any] = []
        for c in current:
            gone = _absent(c, name)
            if gone is None:
                return None
            if not gone:
                v = c.get(name)
                if v is None:
                    return None  # only the primitive's "_" companion: leave it to FHIRPath
                nxt.extend(v if isinstance(v, list) else [v])
        if not nxt:
            return False
        current = nxt
    return True


def _split_top(expr: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and string literals."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch == "'" and (i == 0 or expr[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and expr.startswith(sep, i):
            parts.append(expr[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


Fast = Callable[[Any, str], bool | None]


def _unknown(data: Any, type_path: str) -> bool | None:
    return None


def _term(term: str) -> Fast:
    """A native test for one operand, answering None when only FHIRPath can tell."""
    if term.startswith("(") and _closing(term) == len(term) - 1:
        return _boolean(term[1:-1].strip())
    exact = _EXACT.get(term)
    if exact is not None:
        return exact
    simple = _SIMPLE.match(term)
    if simple:
        path, want = simple.group(1).replace("`", "").split("."), simple.group(2) == "exists"
        first, companion = path[0], "_" + path[0]
        plain_first = first not in _choice_names()

        def check(data: Any, type_path: str) -> bool | None:
            if plain_first and type(data) is dict and first not in data and companion not in data:
                return not want  # the path's first step is absent: nothing exists
            found = _chain(path, data, type_path)
            return None if found is None else found == want

        return check
    pure = _PURE.match(term)
    if pure and len(_split_top(term, " ")) == 1:
        # a path chain starting at one child: on an absent child every step is empty
        name, empty_value = pure.group(1), pure.group(2) == "empty"
        return lambda data, type_path: empty_value if _absent(data, name, type_path) else None
    return _unknown


def _closing(term: str) -> int:
    """Index of the parenthesis that closes the one ``term`` opens with (-1 when unbalanced)."""
    depth, quoted = 0, False
    for i, ch in enumerate(term):
        if ch == "'" and (i == 0 or term[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _boolean(expression: str) -> Fast:
    """FHIRPath's ``implies`` / ``or`` / ``and`` over native operands (three-valued: None = ask FHIRPath).

    Operands answer True or False only when that is certain, so ``a implies b`` is True when ``a`` is
    False, ``b`` when ``a`` is True; ``or`` is True once an operand is, ``and`` False once one is.
    """
    if len(_split_top(expression, " xor ")) > 1:
        return _unknown
    sides = _split_top(expression, " implies ")
    if len(sides) == 2:
        left, right = _boolean(sides[0]), _boolean(sides[1])

        def implies(data: Any, type_path: str) -> bool | None:
            condition = left(data, type_path)
            if condition is False:
                return True
            return None if condition is None else right(data, type_path)

        return implies
    if len(sides) > 2:
        return _unknown
    disjuncts = [[_term(c) for c in _split_top(d, " and ")] for d in _split_top(expression, " or ")]
    if len(disjuncts) == 1 and len(disjuncts[0]) == 1:
        return disjuncts[0][0]  # one operand: its own answer

    def either(data: Any, type_path: str) -> bool | None:
        unknown = False
        for conj in disjuncts:
            value: bool | None = True
            for term in conj:
                r = term(data, type_path)
                if r is False:
                    value = False
                    break
                if r is None:
                    value = None
            if value is True:
                return True
            if value is None:
                unknown = True
        return None if unknown else False

    return either


def _day_precision(data: Any, type_path: str) -> bool | None:
    """``($this as dateTime).toString().length() >= 8`` (R4 vs-1) on a dateTime: it has a day.

    A valid R4 dateTime is 4 (year), 7 (year-month) or at least 10 characters long; other types are
    left to FHIRPath.
    """
    if type_path == "dateTime" and isinstance(data, str):
        return len(data) >= 8
    return None


# Whole expressions with a native equivalent (tests/validation/test_native_invariants.py proves both agree)
_EXACT: dict[str, Fast] = {"($this as dateTime).toString().length() >= 8": _day_precision}


def _fast(expression: str) -> Fast | None:
    """A native evaluator for the commonest invariant shapes, or None. It may answer None (fall back)."""
    if expression in _fast_cache:
        return _fast_cache[expression]
    fn: Fast | None = _boolean(expression.strip())
    if fn is _unknown:
        fn = None
    _fast_cache[expression] = fn
    return fn


def set_resolver(resolver: Callable[[str], dict[str, Any] | None] | None) -> contextvars.Token[Any]:
    return _resolver.set(resolver)


def reset_resolver(token: contextvars.Token[Any]) -> None:
    _resolver.reset(token)


def shortcut(constraint: Constraint) -> Fast | None:
    """The native evaluator of ``constraint`` (a rule of ours or a common shape), or None.

    The validator looks it up once per element definition and hands it to ``evaluate``.
    """
    native = NATIVE_RULES.get(constraint.key)
    if native is not None:
        return lambda data, _type_path: native(data)
    twin = NATIVE_SHORTCUTS.get(constraint.key)
    if twin is not None:
        return twin
    return _fast(constraint.expression)


_LOOK_UP: Any = object()
# How many times the FHIRPath engine ran an invariant: the engine may read %resource, resolve() or
# today(), so the validator does not memoise a sub-walk during which it ran.
engine_runs = 0


def evaluate(
    constraint: Constraint,
    data: Any,
    type_path: str,
    resource: dict[str, Any],
    root: dict[str, Any],
    fast: Fast | None = _LOOK_UP,
) -> bool | str:
    """True when the invariant holds, False when violated, or a message when it cannot be evaluated.

    ``fast`` is ``shortcut(constraint)`` when the caller has it at hand.
    """
    # Rules run on values the structural walk may already have found malformed (a code that is an
    # object): a rule that cannot read its input says so, like one FHIRPath cannot evaluate.
    try:
        if fast is _LOOK_UP:
            fast = shortcut(constraint)
        quick = fast(data, type_path) if fast is not None else None
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
        return f"cannot evaluate: {type(exc).__name__}"
    if quick is not None:
        return quick
    return by_engine(constraint, data, type_path, resource, root)


def by_engine(
    constraint: Constraint, data: Any, type_path: str, resource: dict[str, Any], root: dict[str, Any]
) -> bool | str:
    """``evaluate`` through the FHIRPath engine alone (no native shortcut)."""
    global engine_runs
    engine_runs += 1
    fn = _compiled(constraint.expression)
    if isinstance(fn, Exception):
        return f"cannot parse: {fn}"
    try:
        result = fn.evaluate(
            data, type_name=type_path, resource=resource, root_resource=root, resolver=_resolver.get()
        )
    except (fhirpath.FhirPathError, ArithmeticError) as exc:
        return f"cannot evaluate: {exc}"
    if not result:
        return True  # an empty result does not fail an invariant
    return not (len(result) == 1 and fhirpath.system(result[0]) is False)
