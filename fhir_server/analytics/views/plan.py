"""A ViewDefinition compiled once into plain Python: the fast path for running views.

Views spend their time evaluating the same few FHIRPath shapes on every resource: member paths,
``where(system = '...')``, ``first()``, ``ofType(...)``, ``extension(url)``, ``getResourceKey()``,
``getReferenceKey(Type)``, ``substring``/``replace`` with literal arguments, ``exists``/``not``/``and``/
``or``. Evaluated by walking closures, each step allocates a collection and each ``where`` item an
evaluation scope, which caps a view at about 13,000 rows a second. Here each select of a view becomes
one generated Python function that computes all of its columns in straight-line code (one loop per
step, tri-state booleans without collections, literal arguments folded at compile time).

Expressions are parsed with the server's FHIRPath grammar (``fhir_server.fhirpath.parse``). An
expression that uses anything outside the subset is evaluated by the server's FHIRPath engine
(``Compiled.run``, ``views/fhirpath.py``) for that column, so the plan covers every view and changes no
result: ``tests/analytics/test_view_plan.py`` runs every shipped and tested view both ways (the plan,
and the engine path by path) and compares the rows. The helpers below read JSON as the engine reads
FHIR data: a string function takes a JSON string (a FHIR ``dateTime`` too) and refuses a number.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from fhir_server import definitions
from fhir_server.analytics.views import fhirpath as general
from fhir_server.fhirpath.engine import _to_integer as _engine_to_integer
from fhir_server.fhirpath.engine import reference_parts, unescape

if TYPE_CHECKING:
    from fhir_server.analytics.views.definition import Column, Select

Row = tuple[Any, ...]
# A select's columns for one node: (node, resource, constants, env) -> one tuple of values
HeadFn = Callable[[Any, Any, dict[str, list[Any]], Any], Row]
ListFn = Callable[[Any, Any, dict[str, list[Any]], Any], list[Any]]


class _Unsupported(Exception):
    """Outside the compiled subset: the expression is evaluated by the engine."""


_BUILTIN_CONSTANTS = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("children") or []


def _terminal(node: dict[str, Any]) -> str:
    texts = node.get("terminalNodeText") or []
    return texts[0] if texts else node.get("text") or ""


def _identifier(node: dict[str, Any]) -> str:
    text = node.get("text") or _terminal(node)
    return text[1:-1] if text.startswith("`") and text.endswith("`") else text


class _Code:
    """Lines of generated Python with fresh variable names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1
        self._names = itertools.count()
        self.consts: dict[str, Any] = {}

    def var(self, prefix: str = "t") -> str:
        return f"_{prefix}{next(self._names)}"

    def const(self, value: Any) -> str:
        name = self.var("k")
        self.consts[name] = value
        return name

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)


class _Value:
    """A compiled sub-expression: a collection (``list``; ``int`` when it can only hold integers) or a
    tri-state boolean (``tri``)."""

    __slots__ = ("kind", "member", "name")

    def __init__(self, kind: str, name: str, member: tuple[Any, str] | None = None) -> None:
        self.kind = kind
        self.name = name
        self.member = member  # (the parent's tree or None, the member name): for ofType on a choice


class _Scope:
    """The focus of an expression: one item (a variable), as a collection, and $this."""

    def __init__(self, single: str, this: str | None) -> None:
        self.items = f"[{single}]"
        self.single = single
        self.this = this


class _Compiler:
    def __init__(self, code: _Code) -> None:
        self.code = code

    # -- conversions --------------------------------------------------------------------------------

    def as_list(self, value: _Value) -> str:
        if value.kind != "tri":  # "list", or "int": a list known to hold integers only
            return value.name
        out = self.code.var()
        self.code.emit(f"{out} = [] if {value.name} is None else [{value.name}]")
        return out

    def as_tri(self, value: _Value) -> str:
        if value.kind == "tri":
            return value.name
        out = self.code.var()
        self.code.emit(f"{out} = _truth({value.name})")
        return out

    # -- expressions --------------------------------------------------------------------------------

    def expression(self, node: dict[str, Any], scope: _Scope) -> _Value:
        kind = node.get("type")
        if kind in (None, "EntireExpression", "TermExpression"):
            return self.expression(_children(node)[0], scope)
        if kind == "ParenthesizedTerm":
            return self.expression(_children(node)[0], scope)
        if kind == "InvocationTerm":
            return self.invocation(_children(node)[0], None, scope)
        if kind == "InvocationExpression":
            left, right = _children(node)
            typed = self.typed_choice(left, right, scope)
            if typed is not None:
                return typed
            base = self.expression(left, scope)
            return self.invocation(right, (base, left), scope)
        if kind == "LiteralTerm":
            return self.literal(_children(node)[0])
        if kind == "ExternalConstantTerm":
            return self.constant(_children(node)[0])
        if kind == "EqualityExpression":
            return self.equality(node, scope)
        if kind in ("AndExpression", "OrExpression"):
            return self.logic(node, scope)
        if kind == "AdditiveExpression":
            return self.additive(node, scope)
        if kind == "InequalityExpression":
            return self.inequality(node, scope)
        raise _Unsupported(str(kind))

    def literal_value(self, node: dict[str, Any]) -> Any:
        """The Python value of a literal argument (``_Unsupported`` for anything else)."""
        while node.get("type") in ("TermExpression", "LiteralTerm"):
            node = _children(node)[0]
        kind, text = node.get("type"), _terminal(node)
        if kind == "StringLiteral":
            return unescape(text[1:-1])
        if kind == "NumberLiteral":
            return Decimal(text) if "." in text else int(text)
        if kind == "BooleanLiteral":
            return text == "true"
        raise _Unsupported("a non-literal argument")

    def literal(self, node: dict[str, Any]) -> _Value:
        if node.get("type") == "NullLiteral":
            out = self.code.var()
            self.code.emit(f"{out} = []")
            return _Value("list", out)
        value = self.literal_value(node)
        out = self.code.var()
        self.code.emit(f"{out} = [{self.code.const(value)}]")
        return _Value("int" if type(value) is int else "list", out)

    def constant(self, node: dict[str, Any]) -> _Value:
        inner = _children(node)
        if not inner or inner[0].get("type") != "Identifier":
            raise _Unsupported("a quoted constant")
        name = _identifier(inner[0])
        out = self.code.var()
        if name in ("resource", "rootResource", "context"):
            self.code.emit(f"{out} = [] if resource is None else [resource]")
        elif name in _BUILTIN_CONSTANTS:
            self.code.emit(f"{out} = [{self.code.const(_BUILTIN_CONSTANTS[name])}]")
        else:
            self.code.emit(f"{out} = _constant(constants, {name!r})")
        return _Value("list", out)

    def equality(self, node: dict[str, Any], scope: _Scope) -> _Value:
        op = _terminal(node)
        if op not in ("=", "!="):
            raise _Unsupported(op)
        left_node, right_node = _children(node)
        positive = op == "="
        out = self.code.var()
        try:
            text = self.literal_value(right_node)
        except _Unsupported:
            text = None
        if isinstance(text, str):
            left = self.as_list(self.expression(left_node, scope))
            k = self.code.const(text)
            self.code.emit(
                f"{out} = None if not {left} else (({left}[0] == {k}) is {positive}"
                f" if len({left}) == 1 else {not positive})"
            )
            return _Value("tri", out)
        left = self.as_list(self.expression(left_node, scope))
        right = self.as_list(self.expression(right_node, scope))
        self.code.emit(f"{out} = _equality({left}, {right}, {positive})")
        return _Value("tri", out)

    def logic(self, node: dict[str, Any], scope: _Scope) -> _Value:
        op = _terminal(node)
        if op not in ("and", "or"):
            raise _Unsupported(op)
        left_node, right_node = _children(node)
        a = self.as_tri(self.expression(left_node, scope))
        out = self.code.var()
        code = self.code
        code.emit(f"if {a} is {op == 'or'}:")
        code.depth += 1
        code.emit(f"{out} = {op == 'or'}")
        code.depth -= 1
        code.emit("else:")
        code.depth += 1
        b = self.as_tri(self.expression(right_node, scope))
        if op == "and":
            code.emit(f"{out} = True if ({a} and {b}) else (False if {b} is False else None)")
        else:
            code.emit(f"{out} = False if ({a} is False and {b} is False) else (True if {b} else None)")
        code.depth -= 1
        return _Value("tri", out)

    def _integers(self, node: dict[str, Any], scope: _Scope) -> tuple[str, str, str]:
        """Both operands of ``node``, when both are known to be integers (a literal, ``length()``,
        ``toInteger()``, ``count()`` or arithmetic of those): then ``+``, ``-`` and comparisons are
        plain Python. Anything else (dates, decimals, quantities, strings) keeps the general path."""
        op = _terminal(node)
        left_node, right_node = _children(node)
        left, right = self.expression(left_node, scope), self.expression(right_node, scope)
        if left.kind != "int" or right.kind != "int":
            raise _Unsupported(f"{op} on values not known to be integers")
        return op, left.name, right.name

    def additive(self, node: dict[str, Any], scope: _Scope) -> _Value:
        if _terminal(node) not in ("+", "-"):
            raise _Unsupported(_terminal(node))
        op, a, b = self._integers(node, scope)
        out = self.code.var()
        self.code.emit(f"{out} = [{a}[0] {op} {b}[0]] if {a} and {b} else []")
        return _Value("int", out)

    def inequality(self, node: dict[str, Any], scope: _Scope) -> _Value:
        op, a, b = self._integers(node, scope)
        if op not in ("<", ">", "<=", ">="):
            raise _Unsupported(op)
        out = self.code.var()
        self.code.emit(f"{out} = ({a}[0] {op} {b}[0]) if {a} and {b} else None")
        return _Value("tri", out)

    # -- invocations --------------------------------------------------------------------------------

    def invocation(
        self, node: dict[str, Any], base: tuple[_Value, dict[str, Any]] | None, scope: _Scope
    ) -> _Value:
        kind = node.get("type")
        if kind == "MemberInvocation":
            name = _identifier(_children(node)[0])
            source = self.as_list(base[0]) if base else scope.items
            single = None if base else scope.single
            return _Value("list", self.member(source, single, name), (base, name))
        if kind == "ThisInvocation" and base is None:
            if scope.this is not None:
                out = self.code.var()
                self.code.emit(f"{out} = [{scope.this}]")
                return _Value("list", out)
            return _Value("list", scope.items)
        if kind == "FunctionInvocation":
            return self.function(_children(node)[0], base, scope)
        raise _Unsupported(str(kind))

    def member(self, source: str, single: str | None, name: str) -> str:
        """Children called ``name`` of every item of ``source`` (as ``_member``)."""
        code, out, v = self.code, self.code.var(), self.code.var("v")
        choice = name in _choice_names()
        is_type = definitions.is_resource_type(name)
        k = code.const(name)
        if single is not None:
            code.emit(f"{v} = {single}.get({k}) if isinstance({single}, dict) else None")
            if choice:
                code.emit(f"if {v} is None and isinstance({single}, dict): {v} = _choice({single}, {k})")
            code.emit(f"if {v} is None:")
            if is_type:
                code.emit(
                    f"    {out} = [{single}] if isinstance({single}, dict)"
                    f" and {single}.get('resourceType') == {k} else []"
                )
            else:
                code.emit(f"    {out} = []")
            code.emit(f"elif type({v}) is list:")
            code.emit(f"    {out} = {v} if None not in {v} else [_y for _y in {v} if _y is not None]")
            code.emit("else:")
            code.emit(f"    {out} = [{v}]")
            return out
        item = code.var("x")
        code.emit(f"{out} = []")
        code.emit(f"for {item} in {source}:")
        code.depth += 1
        code.emit(f"if isinstance({item}, dict):")
        code.depth += 1
        code.emit(f"{v} = {item}.get({k})")
        if choice:
            code.emit(f"if {v} is None: {v} = _choice({item}, {k})")
        code.emit(f"if {v} is None:")
        if is_type:
            code.emit(f"    if {item}.get('resourceType') == {k}: {out}.append({item})")
        else:
            code.emit("    pass")
        code.emit(f"elif type({v}) is list:")
        code.emit(f"    {out}.extend([_y for _y in {v} if _y is not None])")
        code.emit("else:")
        code.emit(f"    {out}.append({v})")
        code.depth -= 2
        return out

    def function(
        self, node: dict[str, Any], base: tuple[_Value, dict[str, Any]] | None, scope: _Scope
    ) -> _Value:
        parts = _children(node)
        name = _identifier(parts[0])
        params = _children(parts[1]) if len(parts) > 1 else []
        code = self.code
        if name == "ofType" and len(params) == 1:
            return self.of_type(params[0], base, scope)
        source = self.as_list(base[0]) if base else scope.items
        out = code.var()
        if name == "where" and len(params) == 1:
            item = code.var("x")
            code.emit(f"{out} = []")
            code.emit(f"for {item} in {source}:")
            code.depth += 1
            test = self.as_tri(self.expression(params[0], _Scope(item, item)))
            code.emit(f"if {test} is True: {out}.append({item})")
            code.depth -= 1
            return _Value("list", out)
        if name == "exists" and len(params) <= 1:
            if not params:
                code.emit(f"{out} = len({source}) > 0")
                return _Value("tri", out)
            found = self.function(
                {"children": [{"type": "Identifier", "text": "where"}, {"children": params}]},
                base,
                scope,
            )
            code.emit(f"{out} = len({found.name}) > 0")
            return _Value("tri", out)
        if name == "first" and not params:
            code.emit(f"{out} = {source}[:1]")
            return _Value("list", out)
        if name == "empty" and not params:
            code.emit(f"{out} = not {source}")
            return _Value("tri", out)
        if name == "count" and not params:
            code.emit(f"{out} = [len({source})]")
            return _Value("int", out)
        if name == "length" and not params:
            code.emit(f"{out} = _length({source})")
            return _Value("int", out)
        if name == "toInteger" and not params:
            code.emit(f"{out} = _to_integer({source})")
            return _Value("int", out)
        if name == "not" and not params and base is not None and base[0].kind == "tri":
            code.emit(f"{out} = None if {base[0].name} is None else not {base[0].name}")
            return _Value("tri", out)
        if name == "not" and not params:
            truth = code.var()
            code.emit(f"{truth} = _truth({source})")
            code.emit(f"{out} = None if {truth} is None else not {truth}")
            return _Value("tri", out)
        if name == "getResourceKey" and not params:
            if base is None:
                item = scope.single
                code.emit(
                    f"{out} = [{item}['id']] if isinstance({item}, dict)"
                    f" and isinstance({item}.get('id'), str) else []"
                )
                return _Value("list", out)
            code.emit(
                f"{out} = [_i['id'] for _i in {source}"
                " if isinstance(_i, dict) and isinstance(_i.get('id'), str)]"
            )
            return _Value("list", out)
        if name == "getReferenceKey" and len(params) <= 1:
            wanted = self.type_name(params[0]) if params else None
            code.emit(f"{out} = _reference_keys({source}, {wanted!r})")
            return _Value("list", out)
        if name == "extension" and len(params) == 1:
            url = self.argument(params[0])
            members = self.member(source, None if base else scope.single, "extension")
            code.emit(f"{out} = [_e for _e in {members} if isinstance(_e, dict) and _e.get('url') == {url}]")
            return _Value("list", out)
        if name == "join" and len(params) <= 1:
            sep = str(self.literal_value(params[0]) or "") if params else ""
            k = code.const(sep)
            code.emit(f"{out} = [{k}.join([str(_v) for _v in {source}])]")
            return _Value("list", out)
        if name in ("substring", "replace") and len(params) in (1, 2):
            args = [self.literal_value(p) for p in params]
            if name == "replace" and len(args) != 2:
                raise _Unsupported(name)
            k = code.const(tuple(args))
            code.emit(f"{out} = _{name}({source}, {k})")
            return _Value("list", out)
        if name == "iif" and base is None and len(params) in (2, 3):
            test = self.as_tri(self.expression(params[0], scope))
            code.emit(f"if {test} is True:")
            code.depth += 1
            code.emit(f"{out} = {self.as_list(self.expression(params[1], scope))}")
            code.depth -= 1
            code.emit("else:")
            code.depth += 1
            if len(params) == 3:
                code.emit(f"{out} = {self.as_list(self.expression(params[2], scope))}")
            else:
                code.emit(f"{out} = []")
            code.depth -= 1
            return _Value("list", out)
        raise _Unsupported(name)

    def argument(self, node: dict[str, Any]) -> str:
        """A single-valued argument: a literal (folded) or a constant (one value, read per call)."""
        try:
            return self.code.const(self.literal_value(node))
        except _Unsupported:
            pass
        while node.get("type") == "TermExpression":
            node = _children(node)[0]
        if node.get("type") != "ExternalConstantTerm":
            raise _Unsupported("an argument")
        values = self.constant(_children(node)[0]).name
        out = self.code.var()
        self.code.emit(f"{out} = _single({values}, 'extension()')")
        return out

    def type_name(self, node: dict[str, Any]) -> str:
        while node.get("type") in ("TermExpression", "InvocationTerm"):
            node = _children(node)[0]
        if node.get("type") != "MemberInvocation":
            raise _Unsupported("a type name")
        return _identifier(_children(node)[0])

    def typed_choice(self, left: dict[str, Any], right: dict[str, Any], scope: _Scope) -> _Value | None:
        """``value.ofType(Quantity)``: read ``valueQuantity`` without first finding ``value[x]``."""
        if right.get("type") != "FunctionInvocation":
            return None
        parts = _children(_children(right)[0])
        params = _children(parts[1]) if len(parts) > 1 else []
        if _identifier(parts[0]) != "ofType" or len(params) != 1:
            return None
        step = left
        while step.get("type") == "TermExpression":
            step = _children(step)[0]
        parent: tuple[_Value, dict[str, Any]] | None = None
        if step.get("type") == "InvocationTerm":
            member = _children(step)[0]
        elif step.get("type") == "InvocationExpression":
            parent_node, member = _children(step)
            parent = (self.expression(parent_node, scope), parent_node)
        else:
            return None
        if member.get("type") != "MemberInvocation":
            return None
        name = _identifier(_children(member)[0])
        if name not in _choice_names():
            return None
        return self.of_type(params[0], (_Value("list", "None", (parent, name)), left), scope)

    def of_type(
        self, param: dict[str, Any], base: tuple[_Value, dict[str, Any]] | None, scope: _Scope
    ) -> _Value:
        type_name = self.type_name(param)
        code = self.code
        out = code.var()
        member = base[0].member if base else None
        if member is not None and member[1] in _choice_names():
            # value.ofType(Quantity) reads valueQuantity (a choice element's typed name)
            parent, plain = member
            source = self.as_list(parent[0]) if parent else scope.items
            typed = plain + type_name[:1].upper() + type_name[1:]
            code.emit(f"{out} = _typed_member({source}, {typed!r}, {plain!r}, {type_name!r})")
            return _Value("list", out)
        source = self.as_list(base[0]) if base else scope.items
        code.emit(f"{out} = _of_type({source}, {type_name!r})")
        return _Value("list", out)


# -- the JSON semantics of the compiled steps (as the engine reads FHIR JSON) -----------------------------


@cache
def _choice_names() -> frozenset[str]:
    """Element names that are choices (``value[x]``) somewhere in R4: ``value``, ``effective``, ..."""
    names = set()
    for sd in definitions.structure_definitions():
        for element in sd.get("elements", []):
            path = element.get("path", "")
            if path.endswith("[x]"):
                names.add(path.rsplit(".", 1)[-1][:-3])
    return frozenset(names)


@cache
def _type_names() -> frozenset[str]:
    names = {sd.get("type") or sd.get("name") for sd in definitions.structure_definitions()}
    return frozenset(n for n in names if n) | definitions.primitive_types()


def _is_type_suffix(suffix: str) -> bool:
    """Whether ``suffix`` (``Quantity`` in ``valueQuantity``) names a FHIR type."""
    return suffix in _type_names() or suffix[:1].lower() + suffix[1:] in _type_names()


def _member(items: list[Any], name: str) -> list[Any]:
    choice = name in _choice_names()
    out: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        value = item.get(name)
        if value is None and choice:
            value = _choice(item, name)
        if value is None:
            if item.get("resourceType") == name:
                out.append(item)
            continue
        if isinstance(value, list):
            out.extend(v for v in value if v is not None)
        else:
            out.append(value)
    return out


_PRIMITIVE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "decimal": lambda v: isinstance(v, int | float | Decimal) and not isinstance(v, bool),
}


def _of_type(items: list[Any], type_name: str) -> list[Any]:
    bare = type_name.split(".")[-1]
    check = _PRIMITIVE_CHECKS.get(bare) or _PRIMITIVE_CHECKS.get(bare.lower())
    if check is not None:
        return [v for v in items if check(v)]
    if bare in definitions.primitive_types():
        return [v for v in items if isinstance(v, str)]
    if definitions.is_resource_type(bare):
        return [v for v in items if isinstance(v, dict) and v.get("resourceType") == bare]
    return [v for v in items if isinstance(v, dict) and "resourceType" not in v]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    return bool(a == b)


def _single(items: list[Any], what: str) -> Any:
    if len(items) > 1:
        raise general.FhirPathError(f"{what} needs a single item, got {len(items)}")
    return items[0] if items else None


# -- helpers the generated code calls -----------------------------------------------------------------


def _choice(item: dict[str, Any], name: str) -> Any:
    for key, candidate in item.items():
        suffix = key[len(name) :]
        if key.startswith(name) and suffix[:1].isupper() and _is_type_suffix(suffix):
            return candidate
    return None


def _typed_member(items: list[Any], typed: str, plain: str, type_name: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and typed in item:
            value = item[typed]
            if isinstance(value, list):
                out.extend(value)
            else:
                out.append(value)
        else:
            out.extend(_of_type(_member([item], plain), type_name))
    return out


def _reference_keys(items: list[Any], wanted: str | None) -> list[Any]:
    out = []
    prefix = f"{wanted}/" if wanted else None
    for item in items:
        reference = item.get("reference") if isinstance(item, dict) else None
        if not isinstance(reference, str):
            continue
        if prefix is not None and reference.startswith(prefix):
            rid = reference[len(prefix) :]
            if rid and "/" not in rid:  # "Patient/p1": the common case, as reference_parts reads it
                out.append(rid)
                continue
        rtype, rid = reference_parts(reference)
        if rid is None or (wanted is not None and rtype != wanted):
            continue
        out.append(rid)
    return out


def _string_argument(items: list[Any], name: str) -> str | None:
    """The one string a string function works on (as the engine: several items or a value that is not
    text in the JSON, such as a number, are errors)."""
    if not items:
        return None
    if len(items) > 1:
        raise general.FhirPathError(f"{name}() needs a single string")
    value = items[0]
    if isinstance(value, str):
        return value
    raise general.FhirPathError(f"{name}() needs a string, not {type(value).__name__}")


def _substring(items: list[Any], args: tuple[Any, ...]) -> list[Any]:
    text = _string_argument(items, "substring")
    start = args[0]
    if text is None or type(start) is not int or not 0 <= start < len(text):
        return []
    if len(args) == 1:
        return [text[start:]]
    return [text[start : start + max(int(args[1]), 0)]]


def _replace(items: list[Any], args: tuple[Any, ...]) -> list[Any]:
    text = _string_argument(items, "replace")
    return [] if text is None else [text.replace(str(args[0]), str(args[1]))]


def _length(items: list[Any]) -> list[Any]:
    text = _string_argument(items, "length")
    return [] if text is None else [len(text)]


def _to_integer(items: list[Any]) -> list[Any]:
    if not items:
        return []
    value = items[0] if len(items) == 1 else _single(items, "a conversion")
    number = _engine_to_integer(value) if not isinstance(value, dict | list) else None
    return [] if number is None else [number]


def _equality(a: list[Any], b: list[Any], positive: bool) -> bool | None:
    if not a or not b:
        return None
    same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return same if positive else not same


def _constant(constants: dict[str, list[Any]], name: str) -> list[Any]:
    if name not in constants:
        raise general.FhirPathError(f"the constant %{name} is not defined")
    return constants[name]


_RUNTIME: dict[str, Any] = {
    "_choice": _choice,
    "_typed_member": _typed_member,
    "_reference_keys": _reference_keys,
    "_substring": _substring,
    "_replace": _replace,
    "_length": _length,
    "_to_integer": _to_integer,
    "_equality": _equality,
    "_constant": _constant,
    "_truth": general.truth,
    "_single": _single,
    "_of_type": _of_type,
}


# -- the plan of a view --------------------------------------------------------------------------------


def _compile_into(code: _Compiler, expression: str, scope: _Scope) -> _Value | None:
    """Emit ``expression`` on ``scope``; the value it leaves, or None when not in the subset."""
    from fhir_server.fhirpath import FhirPathError, parse

    try:
        tree = parse(expression)
    except (FhirPathError, RecursionError):
        return None
    saved = (len(code.code.lines), code.code.depth)
    try:
        return code.expression(tree, scope)
    except (_Unsupported, RecursionError):
        del code.code.lines[saved[0] :]
        code.code.depth = saved[1]
        return None


def _build(code: _Code, header: str, name: str) -> Callable[..., Any]:
    source = f"def {name}({header}):\n" + "\n".join(code.lines) + "\n"
    namespace: dict[str, Any] = {**_RUNTIME, **code.consts}
    exec(compile(source, f"<view plan {name}>", "exec"), namespace)
    function = namespace[name]
    function.source = source  # for reading the plan while debugging
    function.needs_env = any("], env)" in line for line in code.lines)  # a general path needs its Env
    return function  # type: ignore[no-any-return]


def compile_list(compiled: general.Compiled) -> ListFn:
    """One expression as a function of (node, resource, constants, env) giving its collection."""
    code = _Code()
    compiler = _Compiler(code)
    result = _compile_into(compiler, compiled.expression, _Scope("node", None))
    if result is None:
        run = compiled.run

        def general_path(node: Any, resource: Any, constants: dict[str, list[Any]], env: Any) -> list[Any]:
            return run([node], env)

        general_path.needs_env = True  # type: ignore[attr-defined]
        return general_path
    code.emit(f"return {compiler.as_list(result)}")
    return _build(code, "node, resource, constants, env", "_expression")  # type: ignore[return-value]


def compile_head(columns: list[Column], value: Callable[..., Any]) -> HeadFn:
    """A select's own columns as one function of (node, resource, constants, env) giving their values.

    ``value`` turns a column's collection into its cell (``definition._value``: types, collections and
    the error for several values); plain text cells are taken as they are, without the call.
    """
    from fhir_server.analytics.views.definition import DECIMAL_TYPES, INTEGER_TYPES

    code = _Code()
    compiler = _Compiler(code)
    cells = []
    for column in columns:
        value_of = _compile_into(compiler, column.path.expression, _Scope("node", None))
        if value_of is None:
            result = code.var()
            code.emit(f"{result} = {code.const(column.path.run)}([node], env)")
        else:
            result = compiler.as_list(value_of)
        cell, k = code.var("c"), code.const(column)
        if (
            column.collection
            or column.type is None
            or column.type in INTEGER_TYPES | DECIMAL_TYPES | {"boolean"}
        ):
            code.emit(f"{cell} = _value({k}, {result}, resource)")
        else:
            code.emit(f"if not {result}: {cell} = None")
            code.emit(f"elif len({result}) == 1 and type({result}[0]) is str: {cell} = {result}[0]")
            code.emit(f"else: {cell} = _value({k}, {result}, resource)")
        cells.append(cell)
    code.emit(f"return ({', '.join(cells)}{',' if len(cells) == 1 else ''})")
    code.consts["_value"] = value
    return _build(code, "node, resource, constants, env", "_head")  # type: ignore[return-value]


def compile_test(expressions: list[general.Compiled]) -> Callable[..., bool]:
    """A view's ``where`` as one function of (resource, constants, env): True when every path is true."""
    code = _Code()
    compiler = _Compiler(code)
    code.emit("node = resource")
    for expression in expressions:
        value_of = _compile_into(compiler, expression.expression, _Scope("node", None))
        if value_of is None:
            result = code.var()
            code.emit(f"{result} = {code.const(expression.run)}([node], env)")
            code.emit(f"if _truth({result}) is not True: return False")
        else:
            code.emit(f"if {compiler.as_tri(value_of)} is not True: return False")
    code.emit("return True")
    return _build(code, "resource, constants, env", "_test")  # type: ignore[return-value]


def plan_select(select: Select, value: Callable[..., Any]) -> bool:
    """Attach compiled functions to ``select`` and its nested selects (``head``, ``each``); True when
    any of them leaves a path to the engine (which needs an ``Env``)."""
    select.head = compile_head(select.columns, value)
    select.each = compile_list(select.for_each) if select.for_each is not None else None
    needs_env = select.head.needs_env or bool(select.each is not None and select.each.needs_env)
    for sub in (*select.selects, *select.union_all):
        needs_env = plan_select(sub, value) or needs_env
    return needs_env


def compiles(expression: str) -> bool:
    """Whether ``expression`` runs as compiled code (False: the engine evaluates it)."""
    code = _Code()
    return _compile_into(_Compiler(code), expression, _Scope("node", None)) is not None
