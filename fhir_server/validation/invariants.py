"""FHIRPath invariants: compiled once per expression (fhirpathpy), cached, evaluated per element.

Two invariants every element carries (``ele-1``, ``ext-1``) are checked natively by the walker: they
run on every element of every resource, and fhirpathpy has no ``hasValue()``. A few base R4 invariants
use FHIRPath that fhirpathpy cannot run or that the specification itself gets wrong; they are listed in
``SKIPPED`` with the reason, and never evaluated.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from fhirpathpy import compile as fp_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server.validation.model import Constraint

# Checked natively by the walker (same meaning, no FHIRPath engine needed).
NATIVE = frozenset({"ele-1", "ext-1"})

# key -> why it is not evaluated. Keys are global in R4 core, so the key alone identifies the rule.
SKIPPED: dict[str, str] = {
    "dom-3": "needs descendants().as(canonical) over the whole resource; fhirpathpy does not type-filter "
    "descendants, and contained-reference matching is checked natively by the reference rules",
    "txt-1": "htmlChecks() (XHTML narrative checks) is not a FHIRPath function fhirpathpy knows",
    "txt-2": "htmlChecks() (XHTML narrative checks) is not a FHIRPath function fhirpathpy knows",
    "sdf-0": "uses matches() on a name with a regex the R4 examples themselves break (spec erratum)",
    "eld-19": "the R4 regex for path names rejects names used in the R4 core definitions (spec erratum)",
    "eld-20": "the R4 regex for path names rejects names used in the R4 core definitions (spec erratum)",
    "opd-1": "R4 erratum: compares profile to the wrong element",
    "que-7": "R4 erratum: answer[x] types compared with a FHIRPath 'is' on a primitive that fhirpathpy "
    "cannot type without the model path of the enableWhen item",
}

_MODEL = models["r4"]
_resolver: contextvars.ContextVar[Callable[[str], dict[str, Any] | None] | None] = contextvars.ContextVar(
    "fhir_validation_resolver", default=None
)


def _has_value(inputs: list[Any]) -> bool:
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))


def _resolve(inputs: list[Any]) -> list[Any]:
    """FHIRPath ``resolve()``: references to resources through the caller's resolver, if any."""
    resolver = _resolver.get()
    out: list[Any] = []
    if resolver is None:
        return out
    for item in inputs:
        ref = item.get("reference") if isinstance(item, dict) else item
        if isinstance(ref, str):
            target = resolver(ref)
            if target is not None:
                out.append(target)
    return out


def _noop_trace(*_args: Any) -> None:
    return None


_OPTIONS = {
    "userInvocationTable": {
        "hasValue": {"fn": _has_value},
        "resolve": {"fn": _resolve},
    },
    "traceFn": _noop_trace,
}

_cache: dict[str, Callable[..., list[Any]] | Exception] = {}


def _compiled(expression: str) -> Callable[..., list[Any]] | Exception:
    hit = _cache.get(expression)
    if hit is None:
        try:
            hit = fp_compile(expression, _MODEL, _OPTIONS)
        except Exception as exc:  # an expression fhirpathpy cannot parse
            hit = exc
        _cache[expression] = hit
    return hit


def set_resolver(resolver: Callable[[str], dict[str, Any] | None] | None) -> contextvars.Token[Any]:
    return _resolver.set(resolver)


def reset_resolver(token: contextvars.Token[Any]) -> None:
    _resolver.reset(token)


def evaluate(constraint: Constraint, data: Any, type_path: str, resource: dict[str, Any],
             root: dict[str, Any]) -> bool | str:
    """True when the invariant holds, False when violated, or a message when it cannot be evaluated."""
    fn = _compiled(constraint.expression)
    if isinstance(fn, Exception):
        return f"cannot parse: {fn}"
    try:
        node = ResourceNode.create_node(data, type_path)
        result = fn(node, {"resource": resource, "rootResource": root})
    except Exception as exc:
        return f"cannot evaluate: {exc}"
    if not result:
        return True  # an empty result does not fail an invariant
    return not (len(result) == 1 and result[0] is False)
