"""Running the official FHIRPath R4 test cases (copied by scripts/copy_fhirpath_tests.py) against an engine.

The expected results follow the suite's schema: ``outputs`` in order (``ordered: false`` compares as a
multiset), ``predicate`` turns the result into a boolean (does it exist), and ``invalid`` says the
expression must be refused (syntax when parsed; semantic or execution when compiled or run).
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import SHARED

DATA = Path(__file__).resolve().parent / "data" / "fhirpath_r4_suite.json"
EXAMPLES = SHARED / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"

# (expression, resource) -> result values; raises on a refused expression
Engine = Callable[[str, dict[str, Any] | None], list[Any]]


def cases() -> list[dict[str, Any]]:
    return json.loads(DATA.read_text(encoding="utf-8"))


@cache
def _examples() -> dict[str, bytes]:
    wanted = {c["input"] for c in cases() if c.get("input")}
    out: dict[str, bytes] = {}
    with tarfile.open(EXAMPLES) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if name in wanted:
                f = tar.extractfile(member)
                if f is not None:
                    out[name] = f.read()
    return out


def input_resource(case: dict[str, Any]) -> dict[str, Any] | None:
    name = case.get("input")
    return json.loads(_examples()[name]) if name else None


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except (InvalidOperation, ValueError):
        return None


def _text(value: Any) -> str:
    """A result value written the way the suite writes expected outputs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _same(expected: dict[str, Any], value: Any) -> bool:
    want = expected["value"]
    kind = expected.get("type")
    if isinstance(value, bool) or kind == "boolean":
        return _text(value) == want
    got = _text(value)
    if kind in ("date", "dateTime", "time") or want.startswith("@"):
        if getattr(value, "kind", None) == "Time":
            got = "T" + got
        return "@" + got.lstrip("@") == want
    if kind in ("decimal", "integer") or (kind is None and _decimal(want) is not None):
        a, b = _decimal(got), _decimal(want)
        if kind is None:  # untyped outputs (boundaries, precision) compare exactly as written
            return got == want
        return a is not None and b is not None and a == b
    if kind == "Quantity":
        return got.replace('"', "'") == want
    return got == want


def run(case: dict[str, Any], engine: Engine) -> tuple[bool, str]:
    """(passed, what happened) for one case."""
    if case.get("inputfile") and not case.get("input"):
        return False, f"input {case['inputfile']} is not in the R4 packages"
    resource = input_resource(case)
    try:
        result = engine(case["expression"], resource)
    except Exception as exc:
        if case.get("invalid"):
            return True, f"refused: {exc}"
        return False, f"error: {type(exc).__name__}: {exc}"
    if case.get("invalid"):
        return False, f"accepted an invalid expression, gave {result!r}"
    if case.get("predicate"):
        result = [len(result) > 0]
    outputs = case["outputs"]
    if len(result) != len(outputs):
        return False, f"expected {[o['value'] for o in outputs]}, got {result!r}"
    if case.get("ordered", True):
        ok = all(_same(o, v) for o, v in zip(outputs, result, strict=True))
    else:
        remaining = list(result)
        ok = True
        for o in outputs:
            hit = next((i for i, v in enumerate(remaining) if _same(o, v)), None)
            if hit is None:
                ok = False
                break
            remaining.pop(hit)
    return ok, ("" if ok else f"expected {[o['value'] for o in outputs]}, got {[_text(v) for v in result]}")
