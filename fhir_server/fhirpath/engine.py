"""A FHIRPath evaluator over fhirpathpy's parse tree, typed by the R4 model.

fhirpathpy's ANTLR grammar (the normative FHIRPath grammar) gives the parse tree; this module compiles
it once into Python closures and evaluates them. Why not fhirpathpy's own evaluator: it types ``1.0``
as an integer, keeps one class for Date and DateTime, drops offsets in date arithmetic, misses
lowBoundary/highBoundary/precision/sort/comparable/matchesFull/escape and reads ``Appointment.x``
inside an invariant as a child named ``Appointment``; those are in the semantics, not in the grammar.

Values in a collection are either FHIR data (``Node``: the JSON value with its R4 type) or System
values: ``bool``, ``int``, ``Decimal``, ``str``, ``Temporal`` (Date, DateTime, Time), ``Quantity``.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhir_server.fhirpath import model, regex, ucum
from fhir_server.fhirpath.values import FhirPathError, Quantity, Temporal, decimal_boundary, decimal_of

Fn = Callable[["Ctx", list[Any]], list[Any]]


class Node:
    """One element of FHIR data: its JSON value, its R4 type and (for a primitive) its ``_`` companion."""

    __slots__ = ("choice", "ext", "type", "value")

    def __init__(
        self, value: Any, type_: model.NodeType | None, ext: Any = None, choice: bool = False
    ) -> None:
        self.value = value
        self.type = type_
        self.ext = ext
        self.choice = choice  # from a choice element (value[x]): its static type is any of the choices

    @property
    def type_name(self) -> str | None:
        return model.type_name(self.type) if self.type else None

    def __repr__(self) -> str:
        return f"Node({self.value!r}, {self.type})"


@dataclass(frozen=True)
class TypeInfo:
    namespace: str
    name: str


class Ctx:
    __slots__ = ("index", "resolver", "this", "total", "trace", "variables")

    def __init__(self, variables: dict[str, Any], resolver: Any, this: list[Any]) -> None:
        self.variables = variables
        self.resolver = resolver
        self.this = this
        self.index: int | None = None
        self.total: list[Any] = []
        self.trace: Callable[[str, list[Any]], None] | None = None

    def scope(self, this: list[Any], index: int | None = None, total: list[Any] | None = None) -> Ctx:
        c = Ctx(self.variables, self.resolver, this)
        c.index, c.total, c.trace = index, self.total if total is None else total, self.trace
        return c


# -- FHIR data -> System values ----------------------------------------------------------------------


def system(item: Any) -> Any:
    """The System value of a FHIR primitive (a Quantity for FHIR Quantities); other items unchanged."""
    if not isinstance(item, Node):
        return item
    name = item.type_name
    value = item.value
    if value is None:
        return item
    if name is None:  # untyped data: JSON primitives are their System values
        if isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return decimal_of(value)
        return item
    if isinstance(value, dict):
        if model.derives(name, "Quantity") and "value" in value:
            number = decimal_of(value.get("value"))
            if number is not None:
                return Quantity(number, value.get("code") or value.get("unit") or "1")
        return item
    kind = model.SYSTEM_OF.get(name)
    if kind == "Boolean":
        return value
    if kind == "Integer":
        return value
    if kind == "Decimal":
        return decimal_of(value)
    if kind in ("Date", "DateTime", "Time"):
        t = Temporal.from_fhir(name, value) if isinstance(value, str) else None
        return t if t is not None else value
    return value


def plain(item: Any) -> Any:
    """A result value for callers: JSON data for FHIR nodes, System values as they are."""
    if isinstance(item, Node):
        return item.value
    return item


def _type_of(value: Any) -> TypeInfo:
    if isinstance(value, Node):
        return TypeInfo("FHIR", value.type_name or "Element")
    if isinstance(value, bool):
        return TypeInfo("System", "Boolean")
    if isinstance(value, int):
        return TypeInfo("System", "Integer")
    if isinstance(value, Decimal):
        return TypeInfo("System", "Decimal")
    if isinstance(value, str):
        return TypeInfo("System", "String")
    if isinstance(value, Temporal):
        return TypeInfo("System", value.kind)
    if isinstance(value, Quantity):
        return TypeInfo("System", "Quantity")
    return TypeInfo("System", "Any")


# -- navigation --------------------------------------------------------------------------------------


def _capital(code: str) -> str:
    return code[0].upper() + code[1:]


def _defines(item: Node, name: str) -> bool | None:
    """Does the item's type define ``name``? None when the type is not known (or, for a choice value,
    only one of the types the expression may mean)."""
    if item.type is None or item.choice:
        return None
    info = model.children(item.type)
    return (name in info or name in ("extension", "id")) if info else None


def _child_nodes(item: Node, name: str) -> list[Any]:
    data = item.value
    info = model.children(item.type) if item.type else {}
    entry = info.get(name)
    if entry is None:
        if not isinstance(data, dict):
            return []
        value = data.get(name)
        return (
            [Node(v, None) for v in value]
            if isinstance(value, list)
            else ([] if value is None else [Node(value, None)])
        )
    if not isinstance(data, dict):
        return []
    choice, types, codes = entry
    out: list[Any] = []
    if choice:
        for code, node_type in zip(codes, types, strict=True):
            key = name + _capital(code)
            if key in data or "_" + key in data:
                for node in _values(data, key, node_type):
                    node.choice = True
                    out.append(node)
        return out
    node_type = types[0] if types else None
    return _values(data, name, node_type)


def _values(data: dict[str, Any], key: str, node_type: model.NodeType | None) -> list[Any]:
    value = data.get(key)
    ext = data.get("_" + key)
    if isinstance(value, list) or isinstance(ext, list):
        values = value if isinstance(value, list) else []
        exts = ext if isinstance(ext, list) else []
        return [
            _make(values[i] if i < len(values) else None, node_type, exts[i] if i < len(exts) else None)
            for i in range(max(len(values), len(exts)))
        ]
    if value is None and ext is None:
        return []
    return [_make(value, node_type, ext)]


def _make(value: Any, node_type: model.NodeType | None, ext: Any = None) -> Node:
    if node_type is not None and node_type[0] in ("Resource", "DomainResource") and isinstance(value, dict):
        actual = model.resource_node_type(value)
        if actual is not None:
            node_type = actual
    return Node(value, node_type, ext)


def _all_children(item: Any) -> list[Any]:
    if not isinstance(item, Node):
        return []
    data = item.value
    if not isinstance(data, dict):
        return []
    info = model.children(item.type) if item.type else {}
    out: list[Any] = []
    seen: set[str] = set()
    for key in data:
        if key == "resourceType":
            continue
        name = key[1:] if key.startswith("_") else key
        if name in seen:
            continue
        seen.add(name)
        if name in info:
            out.extend(_values(data, name, info[name][1][0] if info[name][1] else None))
            continue
        matched = False
        for base, (choice, types, codes) in info.items():
            if choice and name.startswith(base) and name[len(base) :] in {_capital(c) for c in codes}:
                code = name[len(base) :]
                node_type = next(t for c, t in zip(codes, types, strict=True) if _capital(c) == code)
                out.extend(_values(data, name, node_type))
                matched = True
                break
        if not matched:
            out.extend(_values(data, name, None))
    return out


def _member(ctx: Ctx, focus: list[Any], name: str) -> list[Any]:
    out: list[Any] = []
    typed = defined = False
    for item in focus:
        if isinstance(item, Node):
            tname = item.type_name
            if tname is not None and name[:1].isupper() and model.derives(tname, name):
                out.append(item)  # a type name at the head of a path: the item itself (Patient.name)
                typed = defined = True
                continue
            known = _defines(item, name)
            if known is not None:
                typed = True
                defined = defined or known
            out.extend(_child_nodes(item, name))
        elif isinstance(item, TypeInfo):
            if name in ("namespace", "name"):
                out.append(getattr(item, name))
        elif isinstance(item, Quantity):
            if name == "value":
                out.append(item.value)
            elif name in ("unit", "code"):
                out.append(item.unit)
        elif isinstance(item, dict):
            value = item.get(name)
            out.extend(value if isinstance(value, list) else [] if value is None else [value])
    if typed and not defined:  # strict: no item's type has this element (e.g. name.given1)
        raise FhirPathError(f"No element '{name}' on {_type_names(focus)}")
    return out


def _type_names(focus: list[Any]) -> str:
    return ", ".join(sorted({i.type_name for i in focus if isinstance(i, Node) and i.type_name}))


# -- collections to booleans -------------------------------------------------------------------------


def truth(collection: list[Any]) -> bool | None:
    """FHIRPath singleton evaluation for boolean contexts (§4.5): empty is unknown."""
    if not collection:
        return None
    if len(collection) > 1:
        raise FhirPathError("A collection of more than one item cannot be used as a boolean")
    value = system(collection[0])
    return value if isinstance(value, bool) else True


def _single(collection: list[Any], what: str) -> Any:
    if len(collection) > 1:
        raise FhirPathError(f"{what} expects a single item, got {len(collection)}")
    return system(collection[0]) if collection else None


# -- equality and ordering ---------------------------------------------------------------------------


def _number(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | Decimal):
        return Decimal(v)
    return None


def item_equal(a: Any, b: Any) -> bool | None:
    a, b = system(a), system(b)
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        if (a.kind == "Time") != (b.kind == "Time"):
            return False
        c = a.compare(b)
        return None if c is None else c == 0
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        if (ucum.calendar_word(a.unit) in ("year", "month")) != (
            ucum.calendar_word(b.unit) in ("year", "month")
        ):
            return None
        c = a.compare(b)
        return None if c is None else c == 0
    if isinstance(a, Node) and isinstance(b, Node):
        return a.value == b.value
    if type(a) is not type(b):
        return False
    return a == b


def equal(left: list[Any], right: list[Any]) -> bool | None:
    if not left or not right:
        return None
    if len(left) != len(right):
        return False
    unknown = False
    for a, b in zip(left, right, strict=True):
        r = item_equal(a, b)
        if r is False:
            return False
        if r is None:
            unknown = True
    return None if unknown else True


def _normal_string(s: str) -> str:
    return " ".join(s.lower().split())


def item_equivalent(a: Any, b: Any) -> bool:
    a, b = system(a), system(b)
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        digits = min(_scale(na), _scale(nb))
        step = Decimal(1).scaleb(-digits)
        return na.quantize(step, rounding=ROUND_HALF_UP) == nb.quantize(step, rounding=ROUND_HALF_UP)
    if isinstance(a, str) and isinstance(b, str):
        return _normal_string(a) == _normal_string(b)
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        return a.equivalent(b)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return a.equivalent(b)
    if isinstance(a, Node) and isinstance(b, Node):
        return _json_equivalent(a.value, b.value)
    return a == b


def _json_equivalent(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - {"id", "extension"}
        return all(_json_equivalent(a.get(k), b.get(k)) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equivalent(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return _normal_string(a) == _normal_string(b)
    return a == b


def equivalent(left: list[Any], right: list[Any]) -> bool:
    if not left and not right:
        return True
    if len(left) != len(right):
        return False
    remaining = list(right)
    for a in left:
        hit = next((i for i, b in enumerate(remaining) if item_equivalent(a, b)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def _scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def compare(a: Any, b: Any) -> int | None:
    a, b = system(a), system(b)
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, Temporal) and isinstance(b, Temporal):
        return a.compare(b)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        return a.compare(b)
    raise FhirPathError(f"Cannot compare {_type_of(a).name} with {_type_of(b).name}")


def _distinct(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(item_equal(item, o) is True for o in out):
            out.append(item)
    return out


# -- types -------------------------------------------------------------------------------------------

_SYSTEM_TYPES = frozenset(
    {"Boolean", "Integer", "Decimal", "String", "Date", "DateTime", "Time", "Quantity", "Any"}
)


def _resolve_type(spec: str) -> tuple[str | None, str]:
    """(namespace or None for either, name) of a type specifier; unknown names are errors."""
    spec = spec.replace("`", "")
    if "." in spec:
        namespace, name = spec.split(".", 1)
        if namespace == "System":
            if name not in _SYSTEM_TYPES:
                return "System", name  # System.Patient: a System type that nothing is
            return "System", name
        if namespace == "FHIR":
            if not model.is_fhir_type(name):
                raise FhirPathError(f"Unknown type FHIR.{name}")
            return "FHIR", name
        raise FhirPathError(f"Unknown type namespace {namespace}")
    if model.is_fhir_type(spec):
        return (None if spec == "Quantity" else "FHIR"), spec
    if spec in _SYSTEM_TYPES:
        return "System", spec
    raise FhirPathError(f"Unknown type {spec}")


def _is(item: Any, spec: tuple[str | None, str], exact: bool = False) -> bool:
    namespace, name = spec
    if isinstance(item, Node):
        if namespace == "System" or item.type_name is None:
            return False
        return item.type_name == name if exact else model.derives(item.type_name, name)
    if namespace == "FHIR":
        return False
    return _type_of(item).name == name


# -- literals ----------------------------------------------------------------------------------------

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text) + 0:
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_quantity_text(text: str) -> Quantity | None:
    """A quantity written as a string: ``1.5 'mg'``, ``4 days``, ``1.0`` (unit '1')."""
    parts = text.strip().split(None, 1)
    if not parts:
        return None
    number = decimal_of(parts[0])
    if number is None or not _NUMBER_TEXT(parts[0]):
        return None
    if len(parts) == 1:
        return Quantity(number, "1")
    unit = parts[1].strip()
    if unit.startswith("'") and unit.endswith("'") and len(unit) >= 2:
        return Quantity(number, unescape(unit[1:-1]))
    if ucum.is_calendar_word(unit):
        return Quantity(number, unit)
    return None


def _NUMBER_TEXT(text: str) -> bool:
    t = text[1:] if text[:1] in "+-" else text
    head, _, tail = t.partition(".")
    return head.isdigit() and (tail == "" or tail.isdigit()) and not t.endswith(".")


# -- the compiler ------------------------------------------------------------------------------------


def _text(node: dict[str, Any]) -> str:
    return node.get("terminalNodeText", [""])[0] if node.get("terminalNodeText") else node.get("text") or ""


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("children") or []


def compile_node(node: dict[str, Any]) -> Fn:
    kind = node.get("type")
    handler = _COMPILERS.get(kind)  # type: ignore[arg-type]
    if handler is None:
        raise FhirPathError(f"Unsupported FHIRPath construct {kind}")
    return handler(node)


def _c_passthrough(node: dict[str, Any]) -> Fn:
    return compile_node(_children(node)[0])


def _c_invocation_term(node: dict[str, Any]) -> Fn:
    return _invocation(_children(node)[0])


def _invocation(node: dict[str, Any]) -> Fn:
    kind = node["type"]
    if kind == "MemberInvocation":
        name = _identifier(_children(node)[0])
        return lambda ctx, focus: _member(ctx, focus, name)
    if kind == "FunctionInvocation":
        return _function(_children(node)[0])
    if kind == "ThisInvocation":
        return lambda ctx, focus: list(ctx.this)
    if kind == "IndexInvocation":
        return lambda ctx, focus: [] if ctx.index is None else [ctx.index]
    if kind == "TotalInvocation":
        return lambda ctx, focus: list(ctx.total)
    raise FhirPathError(f"Unsupported invocation {kind}")


def _identifier(node: dict[str, Any]) -> str:
    text = node.get("text") or _text(node)
    return text[1:-1] if text.startswith("`") and text.endswith("`") else text


def _c_invocation_expression(node: dict[str, Any]) -> Fn:
    left_node, right_node = _children(node)
    left = compile_node(left_node)
    right = _invocation(right_node)
    return lambda ctx, focus: right(ctx, left(ctx, focus))


def _c_indexer(node: dict[str, Any]) -> Fn:
    left, index = (compile_node(c) for c in _children(node))

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        items = left(ctx, focus)
        i = _single(index(ctx, ctx.this), "An index")
        if i is None:
            return []
        if not isinstance(i, int) or isinstance(i, bool):
            raise FhirPathError("An index must be an integer")
        return [items[i]] if 0 <= i < len(items) else []

    return run


def _c_literal(node: dict[str, Any]) -> Fn:
    child = _children(node)[0]
    kind = child["type"]
    text = _text(child)
    value: Any
    if kind == "NullLiteral":
        return lambda ctx, focus: []
    if kind == "BooleanLiteral":
        value = text == "true"
    elif kind == "StringLiteral":
        value = unescape(text[1:-1])
    elif kind == "NumberLiteral":
        value = Decimal(text) if "." in text else int(text)
    elif kind == "DateTimeLiteral":
        body = text[1:]
        parsed = Temporal.datetime(body) if "T" in body else Temporal.date(body)
        if parsed is None:
            raise FhirPathError(f"Invalid date/time literal {text}")
        value = parsed
    elif kind == "TimeLiteral":
        parsed = Temporal.time(text[2:])
        if parsed is None:
            raise FhirPathError(f"Invalid time literal {text}")
        value = parsed
    elif kind == "QuantityLiteral":
        q = _children(child)[0]
        number = Decimal(_text(q))
        units = _children(q)
        unit = "1"
        if units:
            u = units[0]
            unit = _text(_children(u)[0]) if _children(u) else unescape(_text(u)[1:-1])
        value = Quantity(number, unit)
    else:
        raise FhirPathError(f"Unsupported literal {kind}")
    result = [value]
    return lambda ctx, focus: list(result)


def _c_external(node: dict[str, Any]) -> Fn:
    constant = _children(node)[0]
    inner = _children(constant)
    name = _identifier(inner[0]) if inner else unescape(_text(constant)[2:-1])
    if name.startswith("'"):
        name = unescape(name[1:-1])

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        if name in ctx.variables:
            value = ctx.variables[name]
            return list(value) if isinstance(value, list) else [value]
        if name.startswith("vs-"):
            return [f"http://hl7.org/fhir/ValueSet/{name[3:]}"]
        if name.startswith("ext-"):
            return [f"http://hl7.org/fhir/StructureDefinition/{name[4:]}"]
        raise FhirPathError(f"Unknown variable %{name}")

    return run


def _c_parenthesized(node: dict[str, Any]) -> Fn:
    inner = compile_node(_children(node)[0])
    return lambda ctx, focus: inner(ctx, ctx.this)


def _binary(node: dict[str, Any]) -> tuple[Fn, Fn, str]:
    left, right = (compile_node(c) for c in _children(node))
    return left, right, _text(node)


def _c_polarity(node: dict[str, Any]) -> Fn:
    inner = compile_node(_children(node)[0])
    sign = _text(node)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        value = _single(inner(ctx, focus), "Unary " + sign)
        if value is None:
            return []
        if sign == "+":
            if _number(value) is None and not isinstance(value, Quantity):
                raise FhirPathError("Unary + needs a number")
            return [value]
        if isinstance(value, Quantity):
            return [Quantity(-value.value, value.unit)]
        if _number(value) is None:
            raise FhirPathError("Unary - needs a number")
        return [-value]

    return run


def _arithmetic(op: str, a: Any, b: Any) -> Any:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        both_int = isinstance(a, int) and isinstance(b, int)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if nb == 0:
                return None
            return na / nb
        if op == "div":
            if nb == 0:
                return None
            q = (na / nb).to_integral_value(rounding=ROUND_DOWN)
            return int(q)
        if op == "mod":
            if nb == 0:
                return None
            r = na - nb * (na / nb).to_integral_value(rounding=ROUND_DOWN)
            return int(r) if both_int else r
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if op in ("+", "-") and isinstance(a, Temporal) and isinstance(b, Quantity):
        return a.add(b, 1 if op == "+" else -1)
    if isinstance(a, Quantity) and isinstance(b, Quantity):
        if op in ("*", "/"):
            return a.multiply(b, divide=op == "/")
        if op in ("+", "-"):
            if a.unit == b.unit:
                return Quantity(a.value + b.value if op == "+" else a.value - b.value, a.unit)
            both = a._converted(b)
            if both is None:
                raise FhirPathError(f"Cannot {op} {a} and {b}: the units are not comparable")
            factor = ucum.canonical(a.unit)
            x, y = both
            total = x + y if op == "+" else x - y
            return Quantity(total / factor[0] if factor else total, a.unit)
    if isinstance(a, Quantity) and nb is not None and op in ("*", "/"):
        if op == "/" and nb == 0:
            return None
        return Quantity(a.value * nb if op == "*" else a.value / nb, a.unit)
    raise FhirPathError(f"Cannot apply {op} to {_type_of(a).name} and {_type_of(b).name}")


def _c_arith(node: dict[str, Any]) -> Fn:
    left, right, op = _binary(node)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = _single(left(ctx, focus), f"Operator {op}")
        b = _single(right(ctx, focus), f"Operator {op}")
        if op == "&":
            sa = "" if a is None else a
            sb = "" if b is None else b
            if not isinstance(sa, str) or not isinstance(sb, str):
                raise FhirPathError("& needs strings")
            return [sa + sb]
        if a is None or b is None:
            return []
        if op in ("+", "-") and isinstance(a, Temporal) and _number(b) is not None:
            raise FhirPathError(f"Cannot {op} a number to a {a.kind}: use a quantity with a time unit")
        result = _arithmetic(op, a, b)
        return [] if result is None else [result]

    return run


def _c_union(node: dict[str, Any]) -> Fn:
    left, right, _op = _binary(node)
    return lambda ctx, focus: _distinct(left(ctx, focus) + right(ctx, focus))


def _c_inequality(node: dict[str, Any]) -> Fn:
    left, right, op = _binary(node)
    accept = {"<": (-1,), ">": (1,), "<=": (-1, 0), ">=": (0, 1)}[op]

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = _single(left(ctx, focus), f"Operator {op}")
        b = _single(right(ctx, focus), f"Operator {op}")
        if a is None or b is None:
            return []
        c = compare(a, b)
        return [] if c is None else [c in accept]

    return run


def _c_equality(node: dict[str, Any]) -> Fn:
    left, right, op = _binary(node)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a, b = left(ctx, focus), right(ctx, focus)
        if op in ("=", "!="):
            r = equal(a, b)
            if r is None:
                return []
            return [r if op == "=" else not r]
        r2 = equivalent(a, b)
        return [r2 if op == "~" else not r2]

    return run


def _c_membership(node: dict[str, Any]) -> Fn:
    left, right, op = _binary(node)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a, b = left(ctx, focus), right(ctx, focus)
        element, collection = (a, b) if op == "in" else (b, a)
        if not element:
            return []
        if len(element) > 1:
            raise FhirPathError(f"'{op}' needs a single item")
        return [any(item_equal(element[0], c) is True for c in collection)]

    return run


_LOOSER_THAN_TYPE = frozenset({"UnionExpression", "InequalityExpression"})


def _c_type_expression(node: dict[str, Any]) -> Fn:
    left_node, type_node = _children(node)
    if left_node.get("type") in _LOOSER_THAN_TYPE:
        # fhirpathpy's grammar ranks 'is'/'as' below '|' and comparisons; FHIRPath ranks them above:
        # (a | b) is T  ->  a | (b is T)
        a, b = _children(left_node)
        rotated = {**node, "children": [b, type_node]}
        return compile_node({**left_node, "children": [a, rotated]})
    left = compile_node(left_node)
    spec = _resolve_type(type_node.get("text") or "")
    op = _text(node)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        items = left(ctx, focus)
        if not items:
            return []
        if len(items) > 1:
            raise FhirPathError(f"'{op}' needs a single item")
        if op == "is":
            return [_is(items[0], spec)]
        return [items[0]] if _is(items[0], spec, exact=True) else []

    return run


def _c_logic(node: dict[str, Any]) -> Fn:
    left, right, op = _binary(node)

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        a = truth(left(ctx, focus))
        if op == "and":
            if a is False:
                return [False]
            b = truth(right(ctx, focus))
            if b is False:
                return [False]
            return [True] if a and b else []
        if op == "or":
            if a is True:
                return [True]
            b = truth(right(ctx, focus))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []
        if op == "xor":
            b = truth(right(ctx, focus))
            return [] if a is None or b is None else [a != b]
        # implies
        if a is False:
            return [True]
        b = truth(right(ctx, focus))
        if a is True:
            return [] if b is None else [b]
        return [True] if b is True else []

    return run


def _c_root(node: dict[str, Any]) -> Fn:
    return compile_node(_children(node)[0])


_COMPILERS: dict[str, Callable[[dict[str, Any]], Fn]] = {
    "EntireExpression": _c_root,
    "TermExpression": _c_passthrough,
    "InvocationTerm": _c_invocation_term,
    "LiteralTerm": _c_literal,
    "ExternalConstantTerm": _c_external,
    "ParenthesizedTerm": _c_parenthesized,
    "InvocationExpression": _c_invocation_expression,
    "IndexerExpression": _c_indexer,
    "PolarityExpression": _c_polarity,
    "MultiplicativeExpression": _c_arith,
    "AdditiveExpression": _c_arith,
    "UnionExpression": _c_union,
    "InequalityExpression": _c_inequality,
    "EqualityExpression": _c_equality,
    "MembershipExpression": _c_membership,
    "TypeExpression": _c_type_expression,
    "AndExpression": _c_logic,
    "OrExpression": _c_logic,
    "ImpliesExpression": _c_logic,
}


# -- functions ---------------------------------------------------------------------------------------

Arg = dict[str, Any]  # a parameter's parse tree
FunctionImpl = Callable[[Ctx, list[Any], list[Fn], list[Arg]], list[Any]]
FUNCTIONS: dict[str, tuple[FunctionImpl, tuple[int, ...]]] = {}


def function(name: str, *arity: int) -> Callable[[FunctionImpl], FunctionImpl]:
    def register(fn: FunctionImpl) -> FunctionImpl:
        FUNCTIONS[name] = (fn, arity)
        return fn

    return register


def _function(node: dict[str, Any]) -> Fn:
    parts = _children(node)
    name = _identifier(parts[0])
    params = _children(parts[1]) if len(parts) > 1 else []
    entry = FUNCTIONS.get(name)
    if entry is None:
        raise FhirPathError(f"Unknown function {name}()")
    impl, arity = entry
    if arity and len(params) not in arity:
        raise FhirPathError(f"{name}() takes {' or '.join(map(str, arity))} arguments, not {len(params)}")
    compiled = [compile_node(p) for p in params]

    def run(ctx: Ctx, focus: list[Any]) -> list[Any]:
        return impl(ctx, focus, compiled, params)

    return run


def _arg(ctx: Ctx, fn: Fn) -> list[Any]:
    """An eagerly evaluated argument: relative to the enclosing $this."""
    return fn(ctx, ctx.this)


def _arg_single(ctx: Ctx, fn: Fn, what: str) -> Any:
    return _single(_arg(ctx, fn), what)


def _each(ctx: Ctx, focus: list[Any], fn: Fn) -> list[list[Any]]:
    return [fn(ctx.scope([item], i), [item]) for i, item in enumerate(focus)]


@function("empty", 0)
def _f_empty(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [not focus]


@function("not", 0)
def _f_not(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    value = truth(focus)
    return [] if value is None else [not value]


@function("exists", 0, 1)
def _f_exists(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    if args:
        return [any(truth(r) is True for r in _each(ctx, focus, args[0]))]
    return [bool(focus)]


@function("all", 1)
def _f_all(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [all(truth(r) is True for r in _each(ctx, focus, args[0]))]


def _booleans(focus: list[Any], name: str) -> list[bool]:
    out = []
    for item in focus:
        v = system(item)
        if not isinstance(v, bool):
            raise FhirPathError(f"{name}() needs booleans")
        out.append(v)
    return out


@function("allTrue", 0)
def _f_all_true(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [all(_booleans(focus, "allTrue"))]


@function("anyTrue", 0)
def _f_any_true(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [any(_booleans(focus, "anyTrue"))]


@function("allFalse", 0)
def _f_all_false(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [not any(_booleans(focus, "allFalse"))]


@function("anyFalse", 0)
def _f_any_false(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [not all(_booleans(focus, "anyFalse"))]


@function("subsetOf", 1)
def _f_subset(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    other = _arg(ctx, args[0])
    return [all(any(item_equal(a, b) is True for b in other) for a in focus)]


@function("supersetOf", 1)
def _f_superset(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    other = _arg(ctx, args[0])
    return [all(any(item_equal(b, a) is True for a in focus) for b in other)]


@function("count", 0)
def _f_count(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [len(focus)]


@function("distinct", 0)
def _f_distinct(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return _distinct(focus)


@function("isDistinct", 0)
def _f_is_distinct(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [len(_distinct(focus)) == len(focus)]


@function("where", 1)
def _f_where(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [item for item, r in zip(focus, _each(ctx, focus, args[0]), strict=True) if truth(r) is True]


@function("select", 1)
def _f_select(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [x for r in _each(ctx, focus, args[0]) for x in r]


@function("repeat", 1)
def _f_repeat(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    out: list[Any] = []
    current = focus
    while current:
        fresh: list[Any] = []
        for x in (x for r in _each(ctx, current, args[0]) for x in r):
            seen = out + fresh
            if not any(x is o or (not isinstance(x, Node) and item_equal(x, o) is True) for o in seen):
                fresh.append(x)
        out.extend(fresh)
        current = fresh
    return out


@function("ofType", 1)
def _f_of_type(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    spec = _resolve_type(raw[0].get("text") or "")
    return [item for item in focus if _is(item, spec, exact=True)]


@function("is", 1)
def _f_is(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    spec = _resolve_type(raw[0].get("text") or "")
    if not focus:
        return []
    if len(focus) > 1:
        raise FhirPathError("is() needs a single item")
    return [_is(focus[0], spec)]


@function("as", 1)
def _f_as(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    spec = _resolve_type(raw[0].get("text") or "")
    if len(focus) > 1:
        raise FhirPathError("as() needs a single item")
    return [item for item in focus if _is(item, spec, exact=True)]


@function("type", 0)
def _f_type(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [_type_of(system(item) if not (isinstance(item, Node) and item.type) else item) for item in focus]


@function("single", 0)
def _f_single(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    if len(focus) > 1:
        raise FhirPathError("single() on more than one item")
    return list(focus)


@function("first", 0)
def _f_first(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return focus[:1]


@function("last", 0)
def _f_last(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return focus[-1:]


@function("tail", 0)
def _f_tail(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return focus[1:]


def _int_arg(ctx: Ctx, fn: Fn, name: str) -> int | None:
    value = _arg_single(ctx, fn, name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise FhirPathError(f"{name}() needs an integer")
    return value


@function("skip", 1)
def _f_skip(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    n = _int_arg(ctx, args[0], "skip")
    return focus if n is None or n <= 0 else focus[n:]


@function("take", 1)
def _f_take(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    n = _int_arg(ctx, args[0], "take")
    return [] if n is None or n <= 0 else focus[:n]


@function("intersect", 1)
def _f_intersect(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    other = _arg(ctx, args[0])
    return _distinct([a for a in focus if any(item_equal(a, b) is True for b in other)])


@function("exclude", 1)
def _f_exclude(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    other = _arg(ctx, args[0])
    return [a for a in focus if not any(item_equal(a, b) is True for b in other)]


@function("union", 1)
def _f_union(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return _distinct(focus + _arg(ctx, args[0]))


@function("combine", 1)
def _f_combine(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return focus + _arg(ctx, args[0])


@function("iif", 2, 3)
def _f_iif(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    if len(focus) > 1:
        raise FhirPathError("iif() on more than one item")
    inner = ctx.scope(focus, ctx.index) if focus else ctx
    criterion = args[0](inner, inner.this)
    if len(criterion) > 1:
        raise FhirPathError("iif() needs a single boolean criterion")
    value = system(criterion[0]) if criterion else None
    if value is not None and not isinstance(value, bool):
        raise FhirPathError("iif() needs a boolean criterion")
    if value is True:
        return args[1](inner, inner.this)
    return args[2](inner, inner.this) if len(args) > 2 else []


@function("trace", 1, 2)
def _f_trace(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    if ctx.trace is not None:
        label = _arg_single(ctx, args[0], "trace")
        shown = [x for r in _each(ctx, focus, args[1]) for x in r] if len(args) > 1 else focus
        ctx.trace(str(label), shown)
    return focus


@function("aggregate", 1, 2)
def _f_aggregate(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    total = _arg(ctx, args[1]) if len(args) > 1 else []
    for i, item in enumerate(focus):
        total = args[0](ctx.scope([item], i, total), [item])
    return total


@function("children", 0)
def _f_children(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [c for item in focus for c in _all_children(item)]


@function("descendants", 0)
def _f_descendants(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    out: list[Any] = []
    current = [c for item in focus for c in _all_children(item)]
    while current:
        out.extend(current)
        current = [c for item in current for c in _all_children(item)]
    return out


@function("extension", 1)
def _f_extension(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    url = _arg_single(ctx, args[0], "extension")
    if url is None:
        return []
    out: list[Any] = []
    for item in focus:
        if not isinstance(item, Node):
            continue
        holder = item.value if isinstance(item.value, dict) else item.ext
        for ext in (holder or {}).get("extension") or () if isinstance(holder, dict) else ():
            if isinstance(ext, dict) and ext.get("url") == url:
                out.append(Node(ext, ("Extension", "Extension")))
    return out


# SQL on FHIR v2 adds two functions for views (keys to join their rows): the key of a resource is its
# id, and a reference's key is the id it points at ("Patient/p1", ".../Patient/p1/_history/2",
# "urn:uuid:p1"), kept only for the type asked for when one is given.


@function("getResourceKey", 0)
def _f_resource_key(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    out: list[Any] = []
    for item in focus:
        data = item.value if isinstance(item, Node) else item
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            out.append(data["id"])
    return out


def reference_parts(reference: str) -> tuple[str | None, str | None]:
    """(type, id) of a reference's text; (None, id) for a ``urn:uuid:``/``urn:oid:``."""
    if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
        return None, reference.rsplit(":", 1)[-1]
    parts = [p for p in reference.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, None


@function("getReferenceKey", 0, 1)
def _f_reference_key(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    wanted = (raw[0].get("text") or "").strip("`") if raw else None
    out: list[Any] = []
    for item in focus:
        data = item.value if isinstance(item, Node) else item
        reference = data.get("reference") if isinstance(data, dict) else None
        if not isinstance(reference, str):
            continue
        rtype, rid = reference_parts(reference)
        if rid is None or (wanted is not None and rtype != wanted):
            continue
        out.append(rid)
    return out


@function("hasExtension", 1)
def _f_has_extension(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    """FHIR's ``hasExtension(url)`` (used by R4's own SearchParameters): extension(url).exists()."""
    return [bool(_f_extension(ctx, focus, args, raw))]


@function("hasValue", 0)
def _f_has_value(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [
        len(focus) == 1
        and isinstance(focus[0], Node)
        and focus[0].value is not None
        and not isinstance(focus[0].value, dict | list)
    ]


@function("getValue", 0)
def _f_get_value(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    if len(focus) == 1 and isinstance(focus[0], Node) and not isinstance(focus[0].value, dict | list):
        v = system(focus[0])
        return [] if v is None or isinstance(v, Node) else [v]
    return []


@function("resolve", 0)
def _f_resolve(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    out: list[Any] = []
    if ctx.resolver is None:
        return out
    for item in focus:
        value = item.value if isinstance(item, Node) else item
        ref = value.get("reference") if isinstance(value, dict) else value
        if isinstance(ref, str):
            target = ctx.resolver(ref)
            if isinstance(target, dict):
                node_type = model.resource_node_type(target)
                out.append(Node(target, node_type))
    return out


def _string_input(focus: list[Any], name: str) -> str | None:
    """The one string a string function works on. A FHIR primitive whose JSON value is a string (a
    ``date``, ``dateTime``, ``instant`` or ``time`` element: ``authoredOn.substring(0, 10)``) is taken as
    that text, as the HL7 Java and JavaScript engines do; a System Date/DateTime/Time (a literal
    ``@2024-01-01``, ``today()``) or a number is still an error (``toString()`` first)."""
    if not focus:
        return None
    if len(focus) > 1:
        raise FhirPathError(f"{name}() needs a single string")
    item = focus[0]
    if isinstance(item, Node) and isinstance(item.value, str):
        return item.value
    value = system(item)
    if not isinstance(value, str):
        raise FhirPathError(f"{name}() needs a string, not {_type_of(value).name}")
    return value


def _string_fn(name: str, arity: tuple[int, ...], body: Callable[..., Any]) -> None:
    def impl(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
        text = _string_input(focus, name)
        if text is None:
            return []
        values = []
        for a in args:
            v = _arg_single(ctx, a, name)
            if v is None:
                return []
            values.append(v)
        result = body(text, *values)
        return [] if result is None else [result]

    FUNCTIONS[name] = (impl, arity)


def _substring(text: str, start: Any, length: Any = None) -> str | None:
    if not isinstance(start, int) or start < 0 or start >= len(text):
        return None
    if length is None:
        return text[start:]
    return text[start : start + max(length, 0)]


def _escape(text: str, target: str) -> str | None:
    if target == "html":
        return html.escape(text, quote=True).replace("&#x27;", "'")
    if target == "json":
        return json.dumps(text, ensure_ascii=False)[1:-1]
    return None


def _unescape(text: str, target: str) -> str | None:
    if target == "html":
        return html.unescape(text)
    if target == "json":
        return _JSON_ESCAPE.sub(_json_char, text)
    return None


_JSON_ESCAPE = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})')
_JSON_CHARS = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_char(m: re.Match[str]) -> str:
    code = m.group(1)
    return chr(int(code[1:], 16)) if code.startswith("u") else _JSON_CHARS[code]


def _encode(text: str, how: str) -> str | None:
    data = text.encode()
    if how == "base64":
        return base64.b64encode(data).decode()
    if how == "urlbase64":
        return base64.urlsafe_b64encode(data).decode()
    if how == "hex":
        return data.hex()
    return None


def _decode(text: str, how: str) -> str | None:
    try:
        if how == "base64":
            return base64.b64decode(text, validate=True).decode()
        if how == "urlbase64":
            return base64.urlsafe_b64decode(text).decode()
        if how == "hex":
            return bytes.fromhex(text).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return None


_string_fn("indexOf", (1,), lambda t, s: t.find(s))
_string_fn("substring", (1, 2), _substring)
_string_fn("startsWith", (1,), lambda t, s: t.startswith(s))
_string_fn("endsWith", (1,), lambda t, s: t.endswith(s))
_string_fn("contains", (1,), lambda t, s: s in t)
_string_fn("upper", (0,), lambda t: t.upper())
_string_fn("lower", (0,), lambda t: t.lower())
_string_fn("replace", (2,), lambda t, a, b: t.replace(a, b))
_string_fn("matches", (1,), lambda t, p: regex.search(p, t))
_string_fn("matchesFull", (1,), lambda t, p: regex.full_match(p, t))
_string_fn("replaceMatches", (2,), lambda t, p, s: t if p == "" else regex.substitute(p, s, t))
_string_fn("length", (0,), len)
_string_fn("trim", (0,), lambda t: t.strip())
_string_fn("escape", (1,), _escape)
_string_fn("unescape", (1,), _unescape)
_string_fn("encode", (1,), _encode)
_string_fn("decode", (1,), _decode)


@function("toChars", 0)
def _f_to_chars(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    text = _string_input(focus, "toChars")
    return [] if text is None else list(text)


@function("split", 1)
def _f_split(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    text = _string_input(focus, "split")
    sep = _arg_single(ctx, args[0], "split")
    if text is None or sep is None:
        return []
    return text.split(sep) if sep else list(text)


@function("join", 0, 1)
def _f_join(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    sep = _arg_single(ctx, args[0], "join") if args else ""
    values = [system(x) for x in focus]
    if any(not isinstance(v, str) for v in values):
        raise FhirPathError("join() needs strings")
    return [(sep or "").join(values)]


def _math(name: str, body: Callable[[Any], Any], quantities: bool = False) -> None:
    def impl(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
        value = _single(focus, name)
        if value is None:
            return []
        if isinstance(value, Quantity) and quantities:
            return [Quantity(body(value.value), value.unit)]
        if _number(value) is None:
            raise FhirPathError(f"{name}() needs a number")
        try:
            result = body(value)
        except (ValueError, InvalidOperation, ArithmeticError):
            return []
        return [] if result is None else [result]

    FUNCTIONS[name] = (impl, (0,))


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value)


_math("abs", abs, quantities=True)
_math("ceiling", math.ceil)
_math("floor", math.floor)
_math("truncate", lambda v: int(v))
_math("exp", lambda v: _dec(v).exp())
_math("ln", lambda v: _dec(v).ln() if v > 0 else None)
_math("sqrt", lambda v: _dec(v).sqrt() if v >= 0 else None)


@function("round", 0, 1)
def _f_round(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    value = _single(focus, "round")
    if value is None:
        return []
    digits = _int_arg(ctx, args[0], "round") if args else 0
    if _number(value) is None or digits is None or digits < 0:
        raise FhirPathError("round() needs a number and a non-negative precision")
    return [_dec(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)]


@function("log", 1)
def _f_log(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    value, base = _single(focus, "log"), _arg_single(ctx, args[0], "log")
    if value is None or base is None:
        return []
    try:
        return [_dec(value).ln() / _dec(base).ln()]
    except (InvalidOperation, ArithmeticError):
        return []


@function("power", 1)
def _f_power(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    value, exponent = _single(focus, "power"), _arg_single(ctx, args[0], "power")
    if value is None or exponent is None:
        return []
    if isinstance(value, int) and isinstance(exponent, int) and not isinstance(value, bool) and exponent >= 0:
        return [value**exponent]
    try:
        result = _dec(value) ** _dec(exponent)
    except (InvalidOperation, ArithmeticError):
        return []
    return [] if result.is_nan() else [result]


# conversions


def _to_boolean(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, Decimal) and v in (Decimal(0), Decimal(1)):
        return bool(v)
    if isinstance(v, str):
        low = v.lower()
        if low in ("true", "t", "yes", "y", "1", "1.0"):
            return True
        if low in ("false", "f", "no", "n", "0", "0.0"):
            return False
    return None


def _to_integer(v: Any) -> int | None:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _NUMBER_TEXT(v) and "." not in v:
        return int(v)
    return None


def _to_decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool):
        return Decimal(int(v))
    if isinstance(v, int | Decimal):
        return Decimal(v)
    if isinstance(v, str) and _NUMBER_TEXT(v):
        return Decimal(v)
    return None


def to_string(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | Decimal | str):
        return str(v)
    if isinstance(v, Temporal | Quantity):
        return str(v)
    return None


def _to_quantity(v: Any, unit: Any = None) -> Quantity | None:
    q: Quantity | None
    if isinstance(v, Quantity):
        q = v
    elif isinstance(v, bool):
        q = Quantity(Decimal(int(v)), "1")
    elif isinstance(v, int | Decimal):
        q = Quantity(Decimal(v), "1")
    elif isinstance(v, str):
        q = parse_quantity_text(v)
    else:
        q = None
    if q is not None and unit is not None and unit != q.unit:
        return None
    return q


def _to_temporal(kind: str) -> Callable[[Any], Temporal | None]:
    def convert(v: Any) -> Temporal | None:
        if isinstance(v, Temporal):
            if v.kind == kind:
                return v
            if kind == "Date" and v.kind == "DateTime":
                return Temporal("Date", (*v.parts[:3], None, None), None, None, 0)
            if kind == "DateTime" and v.kind == "Date":
                return Temporal("DateTime", v.parts, None, None, 0)
            return None
        if isinstance(v, str):
            if kind == "Date":
                return Temporal.date(v)
            if kind == "DateTime":
                return Temporal.datetime(v)
            return Temporal.time(v)
        return None

    return convert


_CONVERTERS: dict[str, Callable[..., Any]] = {
    "Boolean": _to_boolean,
    "Integer": _to_integer,
    "Decimal": _to_decimal,
    "String": to_string,
    "Quantity": _to_quantity,
    "Date": _to_temporal("Date"),
    "DateTime": _to_temporal("DateTime"),
    "Time": _to_temporal("Time"),
}


def _register_conversions() -> None:
    for kind, convert in _CONVERTERS.items():

        def to_fn(
            ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg], convert: Any = convert
        ) -> list[Any]:
            value = _single(focus, "A conversion")
            if value is None:
                return []
            extra = [_arg_single(ctx, a, "A conversion") for a in args]
            result = convert(value, *extra)
            return [] if result is None else [result]

        def converts_fn(
            ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg], convert: Any = convert
        ) -> list[Any]:
            value = _single(focus, "A conversion")
            if value is None:
                return []
            extra = [_arg_single(ctx, a, "A conversion") for a in args]
            return [convert(value, *extra) is not None]

        arity = (0, 1) if kind == "Quantity" else (0,)
        FUNCTIONS[f"to{kind}"] = (to_fn, arity)
        FUNCTIONS[f"convertsTo{kind}"] = (converts_fn, arity)


_register_conversions()


@function("now", 0)
def _f_now(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    stamp = datetime.now(UTC)
    return [Temporal.datetime(stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z")]


@function("today", 0)
def _f_today(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [Temporal.date(datetime.now(UTC).strftime("%Y-%m-%d"))]


@function("timeOfDay", 0)
def _f_time_of_day(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    return [Temporal.time(datetime.now(UTC).strftime("%H:%M:%S"))]


@function("sort", *range(0, 10))
def _f_sort(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    """sort(key, ...): ascending by each key; a key written ``-expr`` sorts descending (FHIRPath 3.0)."""
    keys: list[tuple[Fn, bool]] = []
    for fn, node in zip(args, raw, strict=True):
        if node.get("type") == "PolarityExpression" and _text(node) == "-":
            keys.append((compile_node(_children(node)[0]), True))
        else:
            keys.append((fn, False))
    if not keys:
        keys = [(lambda c, f: f, False)]

    import functools

    evaluated = [
        (item, [_single(fn(ctx.scope([item], i), [item]), "sort") for fn, _desc in keys])
        for i, item in enumerate(focus)
    ]

    def order(a: tuple[Any, list[Any]], b: tuple[Any, list[Any]]) -> int:
        for (va, vb), (_fn, desc) in zip(zip(a[1], b[1], strict=True), keys, strict=True):
            if va is None or vb is None:  # an empty key sorts first, whatever the direction
                c = (va is not None) - (vb is not None)
                if c:
                    return c
                continue
            c = compare(va, vb) or 0
            if c:
                return -c if desc else c
        return 0

    return [item for item, _k in sorted(evaluated, key=functools.cmp_to_key(order))]


def _boundary(high: bool) -> FunctionImpl:
    def impl(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
        value = _single(focus, "A boundary")
        precision = _int_arg(ctx, args[0], "boundary") if args else None
        if value is None:
            return []
        if isinstance(value, Temporal):
            result = value.boundary(high, precision)
            return [] if result is None else [result]
        if isinstance(value, Quantity):
            b = decimal_boundary(value.value, high, precision)
            return [] if b is None else [Quantity(b, value.unit)]
        number = _number(value)
        if number is None:
            raise FhirPathError("A boundary needs a number, quantity, date or time")
        b = decimal_boundary(number, high, precision)
        return [] if b is None else [b]

    return impl


FUNCTIONS["lowBoundary"] = (_boundary(False), (0, 1))
FUNCTIONS["highBoundary"] = (_boundary(True), (0, 1))


@function("precision", 0)
def _f_precision(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    value = _single(focus, "precision")
    if value is None:
        return []
    if isinstance(value, Temporal):
        return [value.precision_digits()]
    number = _number(value)
    if number is None:
        raise FhirPathError("precision() needs a number, date or time")
    return [_scale(number)]


@function("comparable", 1)
def _f_comparable(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    a, b = _single(focus, "comparable"), _arg_single(ctx, args[0], "comparable")
    if a is None or b is None:
        return []
    if not isinstance(a, Quantity) or not isinstance(b, Quantity):
        raise FhirPathError("comparable() needs quantities")
    return [a.comparable(b)]


@function("conformsTo", 1)
def _f_conforms_to(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    url = _arg_single(ctx, args[0], "conformsTo")
    if url is None:
        return []
    from fhir_server.validation.model import compiled
    from fhir_server.validation.validator import validate

    if compiled(url) is None:
        raise FhirPathError(f"conformsTo(): {url} is not a StructureDefinition this server knows")
    out = []
    for item in focus:
        data = item.value if isinstance(item, Node) else None
        if not isinstance(data, dict) or "resourceType" not in data:
            out.append(False)
            continue
        sd = compiled(url)
        if sd is not None and sd.type != data["resourceType"]:
            out.append(False)
            continue
        issues = validate(data, [url])
        out.append(not any(i["severity"] in ("error", "fatal") for i in issues))
    return out


@function("htmlChecks", 0)
def _f_html_checks(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    from fhir_server.validation import narrative

    return [all(not narrative.check(system(item)) for item in focus)]


@function("memberOf", 1)
def _f_member_of(ctx: Ctx, focus: list[Any], args: list[Fn], raw: list[Arg]) -> list[Any]:
    url = _arg_single(ctx, args[0], "memberOf")
    if url is None or not focus:
        return []
    from fhir_server.validation import bindings

    members = bindings.members(url)
    if members is None:
        return []
    item = focus[0]
    value = item.value if isinstance(item, Node) else item
    codings: list[Any]
    if isinstance(value, str):
        return [any(code == value for _s, code in members)]
    codings = (value.get("coding") or []) if isinstance(value, dict) and "coding" in value else [value]
    return [any(isinstance(c, dict) and (c.get("system", ""), c.get("code")) in members for c in codings)]
