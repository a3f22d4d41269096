"""FHIRPath for views: the server's engine (``fhir_server.fhirpath``), as everywhere else in the server.

A view's paths are checked by compiling them with the engine (a bad one is a ``FhirPathError``, which
the definition turns into a 422 naming the element). Views run through their compiled plan
(``plan.py``: generated code for the shapes views use most); every path outside it is evaluated here by
the engine, which is also the reference the plan is tested against (``View.rows_evaluated``). The
resource a view runs on is typed by the R4 model; a ``forEach`` focus reaches the engine as the JSON it
is (untyped: its JSON values are System values), as the plan works on JSON. Results are plain JSON
values (``fhirpath.plain``); a System Date/DateTime/Time or Quantity a path computes is its text.

``groups_of`` reads a ``where`` path's parse tree for texts its truth needs (the cheap pre-test on raw
JSON in ``View.may_match``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhir_server import fhirpath as engine
from fhir_server.fhirpath import FhirPathError, Quantity, Temporal
from fhir_server.fhirpath.engine import unescape

__all__ = ["Compiled", "Env", "FhirPathError", "compile_path", "evaluate", "groups_of", "is_true"]

Items = list[Any]


@dataclass
class Env:
    """What a path can see besides its focus: the view's constants and the resource."""

    constants: dict[str, Items] = field(default_factory=dict)
    resource: Any = None


Fn = Callable[[Items, Env], Items]


@dataclass(frozen=True)
class Compiled:
    expression: str
    run: Fn
    tree: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)


def _value(item: Any) -> Any:
    value = engine.plain(item)
    return str(value) if isinstance(value, Temporal | Quantity) else value


@cache
def compile_path(expression: str) -> Compiled:
    """Compile ``expression`` with the engine (cached); raises ``FhirPathError`` when it is not usable."""
    if not isinstance(expression, str) or not expression.strip():
        raise FhirPathError("the expression is empty")
    try:
        compiled = engine.compile(expression)
        tree = engine.parse(expression)
    except RecursionError:
        raise FhirPathError("the expression is nested too deeply") from None

    def run(focus: Items, env: Env) -> Items:
        out: Items = []
        for item in focus:
            found = compiled.evaluate(item, variables=env.constants, resource=env.resource)
            out.extend(_value(x) for x in found)
        return out

    return Compiled(expression, run, tree)


def truth(items: Items) -> bool | None:
    """FHIRPath's singleton evaluation of a collection as a boolean (None: empty, i.e. unknown)."""
    if not items:
        return None
    if len(items) == 1:
        value = items[0]
        return value if isinstance(value, bool) else True
    raise FhirPathError("A collection of more than one item cannot be used as a boolean")


def is_true(items: Items) -> bool:
    return truth(items) is True


def evaluate(expression: str, focus: Any, env: Env | None = None) -> Items:
    """Evaluate on one node (tests and one-off use); views keep the ``Compiled`` and call ``run``."""
    env = env or Env(resource=focus)
    return compile_path(expression).run([focus], env)


# --- texts a where path needs --------------------------------------------------------------------------


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("children") or []


def _text(node: dict[str, Any]) -> str:
    texts = node.get("terminalNodeText") or []
    return texts[0] if texts else node.get("text") or ""


def _string_literal(node: dict[str, Any]) -> str | None:
    while node.get("type") in ("TermExpression", "LiteralTerm"):
        node = _children(node)[0]
    if node.get("type") != "StringLiteral":
        return None
    return unescape(_text(node)[1:-1])


def _groups(node: dict[str, Any]) -> list[frozenset[str]]:
    kind = node.get("type")
    if kind in (None, "EntireExpression", "TermExpression", "ParenthesizedTerm") and _children(node):
        return _groups(_children(node)[0])
    if kind == "AndExpression" and _text(node) == "and":
        left, right = _children(node)
        return _groups(left) + _groups(right)
    if kind == "OrExpression" and _text(node) == "or":
        left, right = (_groups(c) for c in _children(node))
        return [left[0] | right[0]] if left and right else []
    if kind == "EqualityExpression" and _text(node) == "=":
        literal = _string_literal(_children(node)[1])
        return [frozenset({literal})] if literal is not None else []
    if kind == "InvocationTerm":
        return _call_groups(_children(node)[0], None)
    if kind == "InvocationExpression":
        left, right = _children(node)
        return _call_groups(right, left)
    return []


def _call_groups(node: dict[str, Any], base: dict[str, Any] | None) -> list[frozenset[str]]:
    if node.get("type") != "FunctionInvocation":
        return []
    parts = _children(_children(node)[0])
    name = _text(parts[0]) or parts[0].get("text")
    params = _children(parts[1]) if len(parts) > 1 else []
    if name not in ("where", "exists"):
        return []
    out = _groups(base) if base is not None and name == "exists" else []
    return out + (_groups(params[0]) if params else [])


def groups_of(compiled: Compiled) -> list[frozenset[str]]:
    """Texts that must appear in a resource for the path to be true: each group needs one of its
    members. Followed only through ``and``, ``or``, ``where``, ``exists`` and ``= 'text'``, where truth
    really needs the text; anything else requires nothing."""
    return _groups(compiled.tree) if compiled.tree else []
