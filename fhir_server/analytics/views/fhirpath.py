"""FHIRPath for views over parsed JSON: checking a view's paths, and evaluating those the plan does not.

Views run through their compiled plan (``plan.py``: generated code for the shapes views use). This
module is the general evaluator beside it: it checks every path when a view is compiled (a bad one is a
``FhirPathError`` naming what is wrong), evaluates the paths outside the plan's subset as closures over
the JSON (arithmetic, comparisons, string and conversion functions, ``select``, ``iif``...), and is the
reference the plan is tested against (``View.rows_evaluated``). A function outside its own subset is
handed to the server's FHIRPath engine (``fhir_server.fhirpath``, compiled once), so nothing valid is
refused.

Why not the engine for everything: it types values by the R4 model and is strict where views are
lenient (``substring()`` of a FHIR dateTime is an error there, while views read a date as its text:
``effective.ofType(dateTime).substring(0, 10)``), and a ``forEach`` focus reaches it as untyped JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from fhir_server import definitions

Items = list[Any]


class FhirPathError(ValueError):
    """The expression is not valid FHIRPath (or uses something no engine here understands)."""


@dataclass
class Env:
    """What an expression can see besides its focus: constants, the resource, ``$this``/``$index``."""

    constants: dict[str, Items] = field(default_factory=dict)
    resource: Any = None
    this: Any = None
    index: int = 0


Fn = Callable[[Items, Env], Items]


# --- tokens ----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<date>@[0-9T][0-9:\-.TZ+]*)
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<quoted>`[^`]*`)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<special>[%$][A-Za-z_][A-Za-z0-9_]*|%`[^`]*`|%'[^']*')
    | (?P<op><=|>=|!=|!~|[.\[\](),=~<>|+\-*/&{}])
    )""",
    re.VERBOSE,
)
_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(expression: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = expression.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FhirPathError(f"unexpected character {text[pos:].strip()[:1]!r} at position {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    out.append(("end", ""))
    return out


# --- values ----------------------------------------------------------------------------------------


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


def _suffix(type_name: str) -> str:
    return type_name[:1].upper() + type_name[1:]


def _member(items: Items, name: str, choice: bool = False) -> Items:
    out: Items = []
    for item in items:
        if not isinstance(item, dict):
            continue
        value = item.get(name)
        if value is None and choice:
            for key, candidate in item.items():
                suffix = key[len(name) :]
                if (
                    key.startswith(name)
                    and suffix[:1].isupper()
                    and (suffix in _type_names() or suffix[:1].lower() + suffix[1:] in _type_names())
                ):
                    value = candidate
                    break
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


def _of_type(items: Items, type_name: str) -> Items:
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


def _truth(items: Items) -> bool | None:
    """FHIRPath's singleton evaluation of collections as a boolean (None: empty, i.e. unknown)."""
    if not items:
        return None
    if len(items) == 1:
        value = items[0]
        return value if isinstance(value, bool) else True
    raise FhirPathError("a collection of several items was used where one boolean is expected")


def is_true(items: Items) -> bool:
    return _truth(items) is True


def _single(items: Items, what: str) -> Any:
    if len(items) > 1:
        raise FhirPathError(f"{what} needs a single item, got {len(items)}")
    return items[0] if items else None


def _reference_parts(reference: str) -> tuple[str | None, str | None]:
    if reference.startswith("urn:uuid:") or reference.startswith("urn:oid:"):
        return None, reference.rsplit(":", 1)[-1]
    parts = [p for p in reference.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, None


def _today() -> str:
    return date.today().isoformat()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- compiling -------------------------------------------------------------------------------------


def groups_of(fn: Fn) -> list[frozenset[str]]:
    """Texts that must appear in a resource for ``fn`` to be true: each group needs one of its members.

    Only followed through ``and``, ``or``, ``where``, ``exists`` and ``= 'text'``, where truth really
    needs the text to be present; anything else requires nothing.
    """
    return list(getattr(fn, "_groups", []))


class _Unsupported(Exception):
    """A function outside the subset: the whole expression goes to fhirpathpy."""


_BINARY_PRECEDENCE = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "is": 8,
    "as": 8,
    "+": 9,
    "-": 9,
    "&": 9,
    "*": 10,
    "/": 10,
    "div": 10,
    "mod": 10,
}


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.pos = 0
        self.functions: set[str] = set()

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        _, value = self.take()
        if value != text:
            raise FhirPathError(f"expected {text!r} but found {value or 'the end'!r}")

    def parse(self) -> Fn:
        fn = self.expression_(0)
        kind, value = self.peek()
        if kind != "end":
            raise FhirPathError(f"unexpected {value!r} after a complete expression")
        return fn

    def _binary_op(self) -> str | None:
        kind, value = self.peek()
        if kind == "op" and value in _BINARY_PRECEDENCE:
            return value
        if kind == "ident" and value in (
            "and",
            "or",
            "xor",
            "implies",
            "in",
            "contains",
            "div",
            "mod",
            "is",
            "as",
        ):
            return value
        return None

    def expression_(self, min_precedence: int) -> Fn:
        left = self.unary()
        while True:
            op = self._binary_op()
            if op is None or _BINARY_PRECEDENCE[op] < min_precedence:
                return left
            self.take()
            if op in ("is", "as"):
                type_name = self.type_name()
                left = _type_operator(op, left, type_name)
                continue
            right = self.expression_(_BINARY_PRECEDENCE[op] + 1)
            left = _binary(op, left, right)

    def type_name(self) -> str:
        kind, value = self.take()
        if kind not in ("ident", "quoted"):
            raise FhirPathError(f"expected a type name, found {value!r}")
        name = value.strip("`")
        while self.peek()[1] == "." and self.tokens[self.pos + 1][0] in ("ident", "quoted"):
            self.take()
            name += "." + self.take()[1].strip("`")
        return name

    def unary(self) -> Fn:
        kind, value = self.peek()
        if kind == "op" and value in ("-", "+"):
            self.take()
            operand = self.unary()
            if value == "+":
                return operand

            def negate(focus: Items, env: Env) -> Items:
                return [-v for v in operand(focus, env) if isinstance(v, int | float | Decimal)]

            return negate
        return self.postfix()

    def postfix(self) -> Fn:
        fn = self.term()
        while True:
            _, value = self.peek()
            if value == ".":
                self.take()
                fn = self.invocation(fn)
            elif value == "[":
                self.take()
                index = self.expression_(0)
                self.expect("]")
                fn = _indexer(fn, index)
            else:
                return fn

    def term(self) -> Fn:
        kind, value = self.take()
        if kind == "string":
            text = _unescape(value[1:-1])
            return _literal(text)
        if kind == "number":
            number: Any = Decimal(value) if "." in value else int(value)
            return lambda focus, env: [number]
        if kind == "date":
            text = value[1:]
            if text.startswith("T"):
                text = text[1:]
            return lambda focus, env: [text]
        if kind == "special":
            return _special(value)
        if kind == "op" and value == "(":
            inner = self.expression_(0)
            self.expect(")")
            return inner
        if kind == "op" and value == "{":
            self.expect("}")
            return lambda focus, env: []
        if kind in ("ident", "quoted"):
            name = value.strip("`")
            if kind == "ident" and name in ("true", "false"):
                flag = name == "true"
                return lambda focus, env: [flag]
            if self.peek()[1] == "(" and kind == "ident":
                self.take()
                return self.function(name, None)
            return _member_fn(None, name)
        raise FhirPathError(f"unexpected {value or 'end of expression'!r}")

    def invocation(self, base: Fn) -> Fn:
        kind, value = self.take()
        if kind not in ("ident", "quoted"):
            raise FhirPathError(f"expected a name after '.', found {value!r}")
        name = value.strip("`")
        if self.peek()[1] == "(" and kind == "ident":
            self.take()
            return self.function(name, base)
        return _member_fn(base, name)

    def arguments(self) -> list[Fn]:
        args: list[Fn] = []
        if self.peek()[1] == ")":
            self.take()
            return args
        while True:
            args.append(self.expression_(0))
            _, value = self.take()
            if value == ")":
                return args
            if value != ",":
                raise FhirPathError(f"expected ',' or ')' in an argument list, found {value!r}")

    def function(self, name: str, base: Fn | None) -> Fn:
        self.functions.add(name)
        if name in ("ofType", "is", "as"):
            type_name = self.type_name()
            self.expect(")")
            return _of_type_function(name, base, type_name)
        args = self.arguments()
        builder = _FUNCTIONS.get(name)
        if builder is None:
            raise _Unsupported(name)
        arity = _ARITY[name]
        if not arity[0] <= len(args) <= arity[1]:
            raise FhirPathError(f"{name}() takes {arity[0]} to {arity[1]} arguments, got {len(args)}")
        inner = builder(args)
        groups: list[frozenset[str]] = []
        if name in ("where", "exists"):
            groups = (groups_of(base) if base is not None and name == "exists" else []) + (
                groups_of(args[0]) if args else []
            )
        if base is None:
            if groups:
                inner._groups = groups  # type: ignore[attr-defined]
            return inner

        def call(focus: Items, env: Env) -> Items:
            return inner(base(focus, env), env)

        if groups:
            call._groups = groups  # type: ignore[attr-defined]
        return call


def _literal(value: Any) -> Fn:
    def run(focus: Items, env: Env) -> Items:
        return [value]

    run._literal = value  # type: ignore[attr-defined]
    return run


def _special(token: str) -> Fn:
    name = token[1:].strip("`'")
    if token.startswith("$"):
        if name == "this":
            return lambda focus, env: [env.this] if env.this is not None else list(focus)
        if name == "index":
            return lambda focus, env: [env.index]
        raise FhirPathError(f"unknown variable {token}")
    if name in ("resource", "rootResource", "context"):
        return lambda focus, env: [env.resource] if env.resource is not None else []
    if name in ("ucum",):
        return lambda focus, env: ["http://unitsofmeasure.org"]
    if name in ("sct",):
        return lambda focus, env: ["http://snomed.info/sct"]
    if name in ("loinc",):
        return lambda focus, env: ["http://loinc.org"]

    def constant(focus: Items, env: Env) -> Items:
        if name not in env.constants:
            raise FhirPathError(f"the constant %{name} is not defined")
        return env.constants[name]

    return constant


def _indexer(base: Fn, index: Fn) -> Fn:
    def run(focus: Items, env: Env) -> Items:
        items = base(focus, env)
        position = _single(index(focus, env), "an index")
        if not isinstance(position, int) or position < 0 or position >= len(items):
            return []
        return [items[position]]

    return run


def _type_operator(op: str, left: Fn, type_name: str) -> Fn:
    if op == "as":
        return lambda focus, env: _of_type(left(focus, env), type_name)

    def is_type(focus: Items, env: Env) -> Items:
        items = left(focus, env)
        if not items:
            return []
        return [bool(_of_type(items[:1], type_name))]

    return is_type


def _of_type_function(name: str, base: Fn | None, type_name: str) -> Fn:
    def run(focus: Items, env: Env) -> Items:
        items = base(focus, env) if base is not None else focus
        if name == "is":
            return [bool(_of_type(items[:1], type_name))] if items else []
        return _of_type(items, type_name)

    member = getattr(base, "_member_name", None)
    if base is not None and name in ("ofType", "as") and member is not None and member[1] in _choice_names():
        # value.ofType(Quantity) reads valueQuantity (a choice element's typed name)
        parent, plain = member
        typed = plain + _suffix(type_name.split(".")[-1])

        def typed_member(focus: Items, env: Env) -> Items:
            out: Items = []
            for item in parent(focus, env) if parent is not None else focus:
                if isinstance(item, dict) and typed in item:
                    value = item[typed]
                    out.extend(value if isinstance(value, list) else [value])
                else:
                    out.extend(_of_type(_member([item], plain), type_name))
            return out

        return typed_member
    return run


def _member_fn(parent: Fn | None, name: str) -> Fn:
    choice = name in _choice_names()

    def run(focus: Items, env: Env) -> Items:
        return _member(parent(focus, env) if parent is not None else focus, name, choice)

    run._member_name = (parent, name)  # type: ignore[attr-defined]
    return run


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        x, y = Decimal(str(a)), Decimal(str(b))
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b  # type: ignore[assignment]
    else:
        return None
    if op == "<":
        return x < y
    if op == ">":
        return x > y
    if op == "<=":
        return x <= y
    return x >= y


def _binary(op: str, left: Fn, right: Fn) -> Fn:
    if op in ("and", "or", "xor", "implies"):

        def logic(focus: Items, env: Env) -> Items:
            a = _truth(left(focus, env))
            if op == "and" and a is False:
                return [False]
            if op == "or" and a is True:
                return [True]
            if op == "implies" and a is False:
                return [True]
            b = _truth(right(focus, env))
            if op == "and":
                return [True] if a and b else [False] if b is False else []
            if op == "or":
                return [False] if a is False and b is False else [True] if b else []
            if op == "xor":
                return [] if a is None or b is None else [a != b]
            return [True] if b is True else [] if a is None else [False] if b is False else []

        left_groups, right_groups = groups_of(left), groups_of(right)
        if op == "and":
            logic._groups = left_groups + right_groups  # type: ignore[attr-defined]
        elif op == "or" and left_groups and right_groups:
            logic._groups = [left_groups[0] | right_groups[0]]  # type: ignore[attr-defined]
        return logic
    literal = getattr(right, "_literal", None)
    if op in ("=", "!=") and isinstance(literal, str):
        # path = 'text': the commonest test in a view, without the general machinery
        positive = op == "="

        def equals_text(focus: Items, env: Env) -> Items:
            a = left(focus, env)
            if not a:
                return []
            if len(a) == 1:
                return [(a[0] == literal) is positive]
            return [positive is False]

        if positive:
            equals_text._groups = [frozenset({literal})]  # type: ignore[attr-defined]
        return equals_text
    if op in ("=", "!=", "~", "!~"):

        def equality(focus: Items, env: Env) -> Items:
            a, b = left(focus, env), right(focus, env)
            if not a or not b:
                return (
                    []
                    if op in ("=", "!=")
                    else [(op == "~" and not a and not b) or (op == "!~" and bool(a or b))]
                )
            if op in ("~", "!~"):
                same = len(a) == len(b) and all(
                    (str(x).lower() == str(y).lower()) if isinstance(x, str) else _equal(x, y)
                    for x, y in zip(a, b, strict=True)
                )
            else:
                same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
            return [same if op in ("=", "~") else not same]

        return equality
    if op in ("<", ">", "<=", ">="):

        def comparison(focus: Items, env: Env) -> Items:
            a, b = left(focus, env), right(focus, env)
            if not a or not b:
                return []
            result = _compare(op, _single(a, op), _single(b, op))
            return [] if result is None else [result]

        return comparison
    if op == "|":

        def union(focus: Items, env: Env) -> Items:
            out: Items = []
            for item in (*left(focus, env), *right(focus, env)):
                if not any(_equal(item, seen) for seen in out):
                    out.append(item)
            return out

        return union
    if op in ("in", "contains"):

        def membership(focus: Items, env: Env) -> Items:
            a, b = left(focus, env), right(focus, env)
            item, collection = (a, b) if op == "in" else (b, a)
            if not item:
                return []
            value = _single(item, op)
            return [any(_equal(value, x) for x in collection)]

        return membership
    if op == "&":

        def concat(focus: Items, env: Env) -> Items:
            a, b = _single(left(focus, env), "&"), _single(right(focus, env), "&")
            return [f"{'' if a is None else a}{'' if b is None else b}"]

        return concat

    def arithmetic(focus: Items, env: Env) -> Items:
        a, b = left(focus, env), right(focus, env)
        if not a or not b:
            return []
        x, y = _single(a, op), _single(b, op)
        if op == "+" and isinstance(x, str) and isinstance(y, str):
            return [x + y]
        if not (isinstance(x, int | float | Decimal) and isinstance(y, int | float | Decimal)):
            return []
        if isinstance(x, bool) or isinstance(y, bool):
            return []
        dx, dy = Decimal(str(x)), Decimal(str(y))
        if op == "+":
            result: Any = dx + dy
        elif op == "-":
            result = dx - dy
        elif op == "*":
            result = dx * dy
        elif op == "/":
            if dy == 0:
                return []
            result = dx / dy
        elif op == "div":
            if dy == 0:
                return []
            result = int(dx / dy)
        else:
            if dy == 0:
                return []
            result = dx - dy * int(dx / dy)
        if isinstance(x, int) and isinstance(y, int) and op != "/":
            return [int(result)]
        return [result]

    return arithmetic


# --- functions -------------------------------------------------------------------------------------


def _with_items(fn: Callable[[Items], Items]) -> Callable[[list[Fn]], Fn]:
    return lambda args: lambda focus, env: fn(focus)


def _where(args: list[Fn]) -> Fn:
    criterion = args[0]

    def run(focus: Items, env: Env) -> Items:
        out = []
        for i, item in enumerate(focus):
            inner = Env(env.constants, env.resource, item, i)
            if is_true(criterion([item], inner)):
                out.append(item)
        return out

    return run


def _select(args: list[Fn]) -> Fn:
    projection = args[0]

    def run(focus: Items, env: Env) -> Items:
        out: Items = []
        for i, item in enumerate(focus):
            out.extend(projection([item], Env(env.constants, env.resource, item, i)))
        return out

    return run


def _exists(args: list[Fn]) -> Fn:
    if not args:
        return lambda focus, env: [bool(focus)]
    where = _where(args)
    return lambda focus, env: [bool(where(focus, env))]


def _all(args: list[Fn]) -> Fn:
    criterion = args[0]

    def run(focus: Items, env: Env) -> Items:
        return [
            all(
                is_true(criterion([item], Env(env.constants, env.resource, item, i)))
                for i, item in enumerate(focus)
            )
        ]

    return run


def _extension(args: list[Fn]) -> Fn:
    url_fn = args[0]

    def run(focus: Items, env: Env) -> Items:
        url = _single(url_fn(focus, env), "extension()")
        return [e for e in _member(focus, "extension") if isinstance(e, dict) and e.get("url") == url]

    return run


def _join(args: list[Fn]) -> Fn:
    def run(focus: Items, env: Env) -> Items:
        sep = _single(args[0](focus, env), "join()") if args else ""
        return ["".join([]) if not focus else str(sep or "").join(str(v) for v in focus)]

    return run


def _resource_key(args: list[Fn]) -> Fn:
    def run(focus: Items, env: Env) -> Items:
        return [item["id"] for item in focus if isinstance(item, dict) and isinstance(item.get("id"), str)]

    return run


def _reference_key(args: list[Fn]) -> Fn:
    wanted = None
    if args:
        probe = args[0]
        wanted = getattr(probe, "_member_name", (None, None))[1]

    def run(focus: Items, env: Env) -> Items:
        out = []
        for item in focus:
            reference = item.get("reference") if isinstance(item, dict) else None
            if not isinstance(reference, str):
                continue
            rtype, rid = _reference_parts(reference)
            if rid is None or (wanted is not None and rtype is not None and rtype != wanted):
                continue
            if wanted is not None and rtype is None:
                continue
            out.append(rid)
        return out

    return run


def _iif(args: list[Fn]) -> Fn:
    def run(focus: Items, env: Env) -> Items:
        if is_true(args[0](focus, env)):
            return args[1](focus, env)
        return args[2](focus, env) if len(args) > 2 else []

    return run


def _linear_search(pattern: str, text: str) -> bool:
    """``matches()`` on RE2 (linear time): a pattern from a view cannot stall the server."""
    from fhir_server.fhirpath import PatternError, regex

    try:
        return regex(pattern, dot_matches_newline=True).search(text) is not None
    except PatternError as exc:
        raise FhirPathError(str(exc)) from None


def _string_fn(fn: Callable[[str, list[Any]], Any]) -> Callable[[list[Fn]], Fn]:
    def build(args: list[Fn]) -> Fn:
        def run(focus: Items, env: Env) -> Items:
            value = _single(focus, "a string function")
            if value is None:
                return []
            if not isinstance(value, str):
                return []
            values = [_single(a(focus, env), "an argument") for a in args]
            if any(v is None for v in values):
                return []
            result = fn(value, values)
            return [] if result is None else [result]

        return run

    return build


def _to_string(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal | str):
        return str(value)
    return None


def _to_integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return None


def _to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d+)?", value):
        return Decimal(value)
    return None


def _converter(convert: Callable[[Any], Any]) -> Callable[[list[Fn]], Fn]:
    def build(args: list[Fn]) -> Fn:
        def run(focus: Items, env: Env) -> Items:
            value = _single(focus, "a conversion")
            result = None if value is None else convert(value)
            return [] if result is None else [result]

        return run

    return build


def _boundary(low: bool) -> Callable[[list[Fn]], Fn]:
    def build(args: list[Fn]) -> Fn:
        def run(focus: Items, env: Env) -> Items:
            value = _single(focus, "a boundary")
            if not isinstance(value, str):
                return [] if not isinstance(value, int | float | Decimal) else [value]
            from fhir_server.search.values import date_range

            span = date_range(value)
            if span is None:
                return []
            ms = span[0] if low else span[1]
            instant = datetime.fromtimestamp(ms / 1000, UTC)
            return [instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")]

        return run

    return build


_FUNCTIONS: dict[str, Callable[[list[Fn]], Fn]] = {
    "where": _where,
    "select": _select,
    "exists": _exists,
    "all": _all,
    "empty": _with_items(lambda items: [not items]),
    "not": _with_items(lambda items: [] if _truth(items) is None else [not _truth(items)]),
    "first": _with_items(lambda items: items[:1]),
    "last": _with_items(lambda items: items[-1:]),
    "tail": _with_items(lambda items: items[1:]),
    "single": _with_items(lambda items: [_single(items, "single()")] if items else []),
    "count": _with_items(lambda items: [len(items)]),
    "distinct": _with_items(
        lambda items: [x for i, x in enumerate(items) if not any(_equal(x, y) for y in items[:i])]
    ),
    "hasValue": _with_items(lambda items: [len(items) == 1 and not isinstance(items[0], dict | list)]),
    "allTrue": _with_items(lambda items: [all(v is True for v in items)]),
    "anyTrue": _with_items(lambda items: [any(v is True for v in items)]),
    "allFalse": _with_items(lambda items: [all(v is False for v in items)]),
    "anyFalse": _with_items(lambda items: [any(v is False for v in items)]),
    "extension": _extension,
    "join": _join,
    "getResourceKey": _resource_key,
    "getReferenceKey": _reference_key,
    "iif": _iif,
    "trace": lambda args: lambda focus, env: focus,
    "toString": _converter(_to_string),
    "toInteger": _converter(_to_integer),
    "toDecimal": _converter(_to_decimal),
    "lower": _string_fn(lambda s, a: s.lower()),
    "upper": _string_fn(lambda s, a: s.upper()),
    "length": _string_fn(lambda s, a: len(s)),
    "startsWith": _string_fn(lambda s, a: s.startswith(str(a[0]))),
    "endsWith": _string_fn(lambda s, a: s.endswith(str(a[0]))),
    "contains": _string_fn(lambda s, a: str(a[0]) in s),
    "replace": _string_fn(lambda s, a: s.replace(str(a[0]), str(a[1]))),
    "matches": _string_fn(lambda s, a: _linear_search(str(a[0]), s)),
    "substring": _string_fn(
        lambda s, a: (
            (s[int(a[0]) : int(a[0]) + int(a[1])] if len(a) > 1 else s[int(a[0]) :])
            if 0 <= int(a[0]) < len(s)
            else None
        )
    ),
    "today": lambda args: lambda focus, env: [_today()],
    "now": lambda args: lambda focus, env: [_now()],
    "lowBoundary": _boundary(True),
    "highBoundary": _boundary(False),
}
_ARITY: dict[str, tuple[int, int]] = {name: (0, 0) for name in _FUNCTIONS}
_ARITY.update(
    {
        "where": (1, 1),
        "select": (1, 1),
        "exists": (0, 1),
        "all": (1, 1),
        "extension": (1, 1),
        "join": (0, 1),
        "getReferenceKey": (0, 1),
        "iif": (2, 3),
        "trace": (1, 2),
        "startsWith": (1, 1),
        "endsWith": (1, 1),
        "contains": (1, 1),
        "replace": (2, 2),
        "matches": (1, 1),
        "substring": (1, 2),
        "lowBoundary": (0, 1),
        "highBoundary": (0, 1),
    }
)


# --- the public face -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    expression: str
    run: Fn
    native: bool  # False: evaluated by fhirpathpy


def _fallback(expression: str, name: str) -> Fn:
    from fhir_server import fhirpath  # the server's engine (fhirpathpy's grammar, our evaluation)

    try:
        compiled = fhirpath.compile(expression)
        compiled({}, {})
    except Exception as exc:
        raise FhirPathError(f"unknown or unsupported function {name}() ({exc})") from None

    def run(focus: Items, env: Env) -> Items:
        out: Items = []
        context = {k: (v[0] if len(v) == 1 else v) for k, v in env.constants.items()}
        for item in focus:
            result = compiled(item, context)
            out.extend(result if isinstance(result, list) else [result])
        return out

    return run


@cache
def compile_path(expression: str) -> Compiled:
    """Compile ``expression`` (cached); raises ``FhirPathError`` when it is not usable."""
    if not isinstance(expression, str) or not expression.strip():
        raise FhirPathError("the expression is empty")
    parser = _Parser(expression)
    try:
        return Compiled(expression, parser.parse(), True)
    except _Unsupported as unsupported:
        return Compiled(expression, _fallback(expression, str(unsupported)), False)
    except RecursionError:
        raise FhirPathError("the expression is nested too deeply") from None


def evaluate(expression: str, focus: Any, env: Env | None = None) -> Items:
    """Evaluate on one node (tests and one-off use); views keep the ``Compiled`` and call ``run``."""
    env = env or Env(resource=focus)
    return compile_path(expression).run([focus], env)


# --- what the compiled plan of a view (``plan.py``) shares with this evaluator -----------------------

unescape = _unescape
member = _member
of_type = _of_type
equal = _equal
truth = _truth
single = _single
reference_parts = _reference_parts
choice_names = _choice_names


def is_type_suffix(suffix: str) -> bool:
    """Whether ``suffix`` (``Quantity`` in ``valueQuantity``) names a FHIR type."""
    return suffix in _type_names() or suffix[:1].lower() + suffix[1:] in _type_names()
