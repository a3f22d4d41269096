"""A SQL on FHIR v2 ViewDefinition, checked and compiled once, and the rows it makes of one resource.

Supported: ``resource``, ``constant``, ``where``, and selects with ``column`` (``name``, ``path``,
``type``, ``collection``), nested ``select``, ``forEach``, ``forEachOrNull`` and ``unionAll``, with the
row semantics of the specification: a select's rows are the cartesian product of its own columns,
its nested selects and its unionAll branches, evaluated for each node its ``forEach`` gives.
Every problem in a definition is a ``ViewError`` naming the element (``ViewDefinition.select[0]...``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.analytics.views import derived, plan
from fhir_server.analytics.views.fhirpath import (
    Compiled,
    Env,
    FhirPathError,
    compile_path,
    groups_of,
    is_true,
)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_STATUSES = ("draft", "active", "retired", "unknown")
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
DECIMAL_TYPES = frozenset({"decimal"})
BOOLEAN_TYPES = frozenset({"boolean"})


class ViewError(ValueError):
    """A ViewDefinition that cannot run (422), or a row it cannot make; ``where`` names the element."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (ViewError, (self.message, self.where))  # raised in a worker process, re-raised here


@dataclass(frozen=True)
class Column:
    name: str
    path: Compiled
    type: str | None
    collection: bool
    where: str  # the element, for errors


@dataclass
class Select:
    columns: list[Column] = field(default_factory=list)
    selects: list[Select] = field(default_factory=list)
    for_each: Compiled | None = None
    or_null: bool = False
    union_all: list[Select] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every column this select produces, in order
    # The compiled plan (``plan.py``): the own columns' values at one node, and the forEach's nodes.
    head: Any = None
    each: Any = None


@dataclass
class View:
    """A compiled ViewDefinition."""

    resource_type: str
    root: Select
    where: list[Compiled]
    constants: dict[str, list[Any]]
    columns: list[str]
    types: dict[str, str | None]
    collections: dict[str, bool]
    name: str | None = None
    url: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    # Byte strings of which the raw JSON must hold one per group to pass ``where`` (a cheap pre-test).
    required: list[tuple[bytes, ...]] = field(default_factory=list)
    test: Any = None  # the compiled ``where`` (plan.py)
    needs_env: bool = True  # False: every path is compiled, no evaluation scope to make per resource
    derivation: str | None = None  # rows the server derives from this view's rows (derived.py)
    flat: Any = None  # the one select's compiled columns, when it is the only select and plain (one row)

    def may_match(self, body: bytes) -> bool:
        """False only when ``where`` cannot be true for this stored JSON (checked without parsing)."""
        if not self.required or b"\\" in body:
            return True
        return all(any(text in body for text in group) for group in self.required)

    def rows(self, resource: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of one resource (none when a ``where`` is not true), by the compiled plan."""
        constants = self.constants
        env = Env(constants, resource) if self.needs_env else None
        if not self.test(resource, constants, env):
            return []
        head = self.flat
        if head is not None:  # one plain select (the shape of every shipped view): its one row
            return [head(resource, resource, constants, env)]
        return _planned_rows(self.root, resource, resource, constants, env)

    def rows_evaluated(self, resource: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The same rows by the server's FHIRPath engine, path by path (the reference the plan is tested
        on)."""
        env = Env(self.constants, resource)
        for criterion in self.where:
            if not is_true(criterion.run([resource], env)):
                return []
        return _rows(self.root, resource, env)


def _column_types() -> frozenset[str]:
    structures = {
        sd.get("type") for sd in definitions.structure_definitions() if sd.get("kind") == "complex-type"
    }
    return frozenset(t for t in structures if t) | definitions.primitive_types() | {"integer64"}


def _compile(path: Any, where: str) -> Compiled:
    if not isinstance(path, str) or not path.strip():
        raise ViewError("a FHIRPath expression is required here", where)
    try:
        return compile_path(path)
    except FhirPathError as exc:
        raise ViewError(f"invalid FHIRPath '{path}': {exc}", where) from None


def _constant(item: Any, where: str) -> tuple[str, list[Any]]:
    if not isinstance(item, dict):
        raise ViewError("a constant must be an object", where)
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ViewError(
            "a constant needs a name of letters, digits and _ (starting with a letter)", f"{where}.name"
        )
    values = [(k, v) for k, v in item.items() if k.startswith("value")]
    if len(values) != 1:
        raise ViewError(f"the constant '{name}' needs exactly one value[x]", where)
    key, value = values[0]
    if isinstance(value, dict | list):
        raise ViewError(f"the constant '{name}' must have a primitive value", f"{where}.{key}")
    if isinstance(value, float):
        value = Decimal(str(value))
    return name, [value]


def _select(item: Any, where: str, types: frozenset[str]) -> Select:
    if not isinstance(item, dict):
        raise ViewError("a select must be an object", where)
    known = {"column", "select", "forEach", "forEachOrNull", "unionAll", "extension", "id"}
    unknown = sorted(set(item) - known)
    if unknown:
        raise ViewError(f"unknown element '{unknown[0]}' in a select", f"{where}.{unknown[0]}")
    select = Select()
    if "forEach" in item and "forEachOrNull" in item:
        raise ViewError("a select may have forEach or forEachOrNull, not both", f"{where}.forEachOrNull")
    if "forEach" in item:
        select.for_each = _compile(item["forEach"], f"{where}.forEach")
    elif "forEachOrNull" in item:
        select.for_each = _compile(item["forEachOrNull"], f"{where}.forEachOrNull")
        select.or_null = True
    columns = item.get("column", [])
    if not isinstance(columns, list):
        raise ViewError("column must be an array", f"{where}.column")
    for i, col in enumerate(columns):
        at = f"{where}.column[{i}]"
        if not isinstance(col, dict):
            raise ViewError("a column must be an object", at)
        name = col.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ViewError(
                "a column needs a name of letters, digits and _ (starting with a letter)", f"{at}.name"
            )
        ctype = col.get("type")
        if ctype is not None and (not isinstance(ctype, str) or ctype not in types):
            raise ViewError(
                f"unknown column type {ctype!r} (use a FHIR type such as string, integer, date)", f"{at}.type"
            )
        collection = col.get("collection", False)
        if not isinstance(collection, bool):
            raise ViewError("collection must be true or false", f"{at}.collection")
        select.columns.append(Column(name, _compile(col.get("path"), f"{at}.path"), ctype, collection, at))
        select.names.append(name)
    nested = item.get("select", [])
    if not isinstance(nested, list):
        raise ViewError("select must be an array", f"{where}.select")
    for i, sub in enumerate(nested):
        compiled = _select(sub, f"{where}.select[{i}]", types)
        select.selects.append(compiled)
        select.names.extend(compiled.names)
    branches = item.get("unionAll", [])
    if not isinstance(branches, list):
        raise ViewError("unionAll must be an array", f"{where}.unionAll")
    for i, sub in enumerate(branches):
        compiled = _select(sub, f"{where}.unionAll[{i}]", types)
        if select.union_all and compiled.names != select.union_all[0].names:
            raise ViewError(
                "every unionAll branch must have the same columns in the same order"
                f" ({select.union_all[0].names} vs {compiled.names})",
                f"{where}.unionAll[{i}]",
            )
        select.union_all.append(compiled)
    if select.union_all:
        select.names.extend(select.union_all[0].names)
    return select


def _collect(select: Select, out: list[Column]) -> None:
    out.extend(select.columns)
    for sub in select.selects:
        _collect(sub, out)
    if select.union_all:
        _collect(select.union_all[0], out)


def compile_view(resource: Any) -> View:
    """Check and compile a ViewDefinition resource; raises ``ViewError`` naming the offending element."""
    if not isinstance(resource, dict):
        raise ViewError("a ViewDefinition must be a JSON object", "ViewDefinition")
    if resource.get("resourceType") != "ViewDefinition":
        raise ViewError("resourceType must be ViewDefinition", "ViewDefinition.resourceType")
    rtype = resource.get("resource")
    if not isinstance(rtype, str) or not definitions.is_resource_type(rtype):
        raise ViewError(
            f"resource must name a FHIR R4 resource type, not {rtype!r}", "ViewDefinition.resource"
        )
    status = resource.get("status")
    if status not in _STATUSES:
        raise ViewError(f"status must be one of {', '.join(_STATUSES)}", "ViewDefinition.status")
    constants: dict[str, list[Any]] = {}
    raw_constants = resource.get("constant", [])
    if not isinstance(raw_constants, list):
        raise ViewError("constant must be an array", "ViewDefinition.constant")
    for i, item in enumerate(raw_constants):
        name, value = _constant(item, f"ViewDefinition.constant[{i}]")
        constants[name] = value
    selects = resource.get("select")
    if not isinstance(selects, list) or not selects:
        raise ViewError("a ViewDefinition needs at least one select", "ViewDefinition.select")
    types = _column_types()
    root = Select()
    for i, item in enumerate(selects):
        compiled = _select(item, f"ViewDefinition.select[{i}]", types)
        root.selects.append(compiled)
        root.names.extend(compiled.names)
    seen: set[str] = set()
    for name in root.names:
        if name in seen:
            raise ViewError(f"the column name '{name}' is used twice", "ViewDefinition.select")
        seen.add(name)
    wheres = resource.get("where", [])
    if not isinstance(wheres, list):
        raise ViewError("where must be an array", "ViewDefinition.where")
    where = [
        _compile(w.get("path") if isinstance(w, dict) else None, f"ViewDefinition.where[{i}].path")
        for i, w in enumerate(wheres)
    ]
    columns: list[Column] = []
    _collect(root, columns)
    _check_constants(resource, constants)
    required = []
    for criterion in where:
        for group in groups_of(criterion):
            encoded = tuple(orjson.dumps(text) for text in sorted(group))
            if all(b"\\" not in e for e in encoded):
                required.append(encoded)
    derivation = _derivation(resource, root.names)
    needs_env = plan.plan_select(root, _value)
    test = plan.compile_test(where)
    only = root.selects[0] if len(root.selects) == 1 else None
    plain = only is not None and only.each is None and not only.selects and not only.union_all
    return View(
        flat=only.head if plain and only is not None else None,
        derivation=derivation,
        needs_env=needs_env or test.needs_env,
        test=test,
        required=required,
        resource_type=rtype,
        root=root,
        where=where,
        constants=constants,
        columns=list(root.names),
        types={c.name: c.type for c in columns},
        collections={c.name: c.collection for c in columns},
        name=resource.get("name") if isinstance(resource.get("name"), str) else None,
        url=resource.get("url") if isinstance(resource.get("url"), str) else None,
        source=resource,
    )


def _derivation(resource: dict[str, Any], names: list[str]) -> str | None:
    code, where = derived.derivation_of(resource)
    if code is None:
        return None
    if code not in derived.DERIVATIONS:
        raise ViewError(
            f"unknown derivation {code!r} (this server derives: {', '.join(derived.DERIVATIONS)})",
            f"{where}.valueCode",
        )
    missing = [name for name in derived.GROWTH_INPUTS if name not in names]
    if missing:
        raise ViewError(
            f"the derivation {code} reads the columns {', '.join(derived.GROWTH_INPUTS)}; missing: "
            + ", ".join(missing),
            "ViewDefinition.select",
        )
    return str(code)


def _check_constants(resource: dict[str, Any], constants: dict[str, list[Any]]) -> None:
    """Every %name a path uses must be a declared constant (or one FHIRPath itself defines)."""
    builtin = {"resource", "rootResource", "context", "ucum", "sct", "loinc"}
    text = (
        orjson.dumps(resource.get("select", [])).decode() + orjson.dumps(resource.get("where", [])).decode()
    )
    for name in re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)", text):
        if name not in constants and name not in builtin:
            raise ViewError(f"the constant %{name} is used but not defined", "ViewDefinition.constant")


# --- rows ------------------------------------------------------------------------------------------


def _value(column: Column, items: list[Any], resource: dict[str, Any]) -> Any:
    if not items:
        return [] if column.collection else None
    convert = _CONVERTERS.get(column.type, _untyped)
    if column.collection:
        return [convert(v) for v in items]
    if len(items) > 1:
        rid = f"{resource.get('resourceType')}/{resource.get('id')}"
        raise ViewError(
            f"the column '{column.name}' gives {len(items)} values for {rid}; set collection to true or"
            " narrow the path (for example with first())",
            f"{column.where}.path",
        )
    value = items[0]
    if type(value) is str and column.type not in _NUMERIC_OR_BOOLEAN:  # the common case, fast
        return value
    return convert(value)


def _as_integer(value: Any) -> int | None:
    if isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal | float) and value == int(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return None


def _as_decimal(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


def _as_boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _untyped(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, Decimal):
        return float(value)
    return value


_CONVERTERS: dict[str | None, Any] = {t: _as_integer for t in INTEGER_TYPES}
_CONVERTERS.update({t: _as_decimal for t in DECIMAL_TYPES})
_CONVERTERS.update({t: _as_boolean for t in BOOLEAN_TYPES})
_NUMERIC_OR_BOOLEAN = frozenset(INTEGER_TYPES | DECIMAL_TYPES | BOOLEAN_TYPES | {None})


class _TextConverters(dict):  # type: ignore[type-arg]
    """Any other declared type (string, code, date, ...) is text."""

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default if key is None else _as_text


_CONVERTERS = _TextConverters(_CONVERTERS)


def _rows(select: Select, node: Any, env: Env) -> list[tuple[Any, ...]]:
    if select.for_each is not None:
        foci = select.for_each.run([node], env)
        if not foci:
            return [(None,) * len(select.names)] if select.or_null else []
        out: list[tuple[Any, ...]] = []
        for focus in foci:
            out.extend(_rows_at(select, focus, env))
        return out
    return _rows_at(select, node, env)


def _rows_at(select: Select, node: Any, env: Env) -> list[tuple[Any, ...]]:
    resource = env.resource
    focus = [node]
    head = tuple([_value(c, c.path.run(focus, env), resource) for c in select.columns])
    if not select.selects and not select.union_all:
        return [head]
    return _joined(head, select, lambda sub: _rows(sub, node, env))


def _planned_rows(
    select: Select, node: Any, resource: Any, constants: dict[str, list[Any]], env: Env | None
) -> list[tuple[Any, ...]]:
    if select.each is not None:
        foci = select.each(node, resource, constants, env)
        if not foci:
            return [(None,) * len(select.names)] if select.or_null else []
        out: list[tuple[Any, ...]] = []
        for focus in foci:
            out.extend(_planned_rows_at(select, focus, resource, constants, env))
        return out
    return _planned_rows_at(select, node, resource, constants, env)


def _planned_rows_at(
    select: Select, node: Any, resource: Any, constants: dict[str, list[Any]], env: Env | None
) -> list[tuple[Any, ...]]:
    head = select.head(node, resource, constants, env)
    if not select.selects and not select.union_all:
        return [head]
    return _joined(head, select, lambda sub: _planned_rows(sub, node, resource, constants, env))


def _joined(
    head: tuple[Any, ...], select: Select, rows_of: Callable[[Select], list[tuple[Any, ...]]]
) -> list[tuple[Any, ...]]:
    """``head`` times the rows of each nested select, times the union of the unionAll branches
    (both evaluators share it: only how a nested select's rows are made differs)."""
    combined: list[tuple[Any, ...]] = [head]
    for sub in select.selects:
        part = rows_of(sub)
        if not part:
            return []
        combined = (
            [a + b for a in combined for b in part]
            if len(part) > 1 or len(combined) > 1
            else [combined[0] + part[0]]
        )
    if select.union_all:
        union: list[tuple[Any, ...]] = []
        for branch in select.union_all:
            union.extend(rows_of(branch))
        if not union:
            return []
        combined = [a + b for a in combined for b in union]
    return combined
