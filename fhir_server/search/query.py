"""Parse a search request into a backend-neutral query tree plus result controls.

Bad values raise ``FhirError(400)`` naming the parameter. Unknown parameters are ignored (left out of
``applied``, which the self link shows, and reported in ``warnings``) unless ``strict``. Values are
parsed and normalised here once, so each backend only translates the tree.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.search import registry
from fhir_server.search.model import SearchParam
from fhir_server.search.paths import implied_code_systems
from fhir_server.search.values import (
    canonical_unit,
    date_range,
    implicit_range,
    normalize,
)

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"missing", "exact", "contains"}),
    "token": frozenset({"missing", "text", "not", "in", "not-in", "of-type"}),
    "reference": frozenset({"missing", "identifier"}),  # plus :[type]
    "date": frozenset({"missing"}),
    "number": frozenset({"missing"}),
    "quantity": frozenset({"missing"}),
    "uri": frozenset({"missing", "below", "above"}),
    "composite": frozenset({"missing"}),
}
SORTABLE = frozenset({"string", "token", "date", "number", "quantity", "reference", "uri"})
SUMMARY_MODES = ("true", "text", "data", "count", "false")
_CONTROLS = frozenset(
    {
        "_count",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_cursor",
        "_type",
        "_format",
        "_pretty",
    }
)
MAX_INCLUDE_DEPTH = 4


# --- query tree ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StringValue:
    text: str  # normalised unless exact
    mode: str  # start | exact | contains


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code (``system|``)
    implicit: bool = False  # ``system`` is the implied system of ``code`` elements: rows without one match


@dataclass(frozen=True)
class OfTypeValue:
    system: str | None
    type_code: str
    value: str


@dataclass(frozen=True)
class CodeSetValue:
    pairs: tuple[tuple[str | None, str], ...]  # (system, code) from a value set expansion
    bare: tuple[str, ...] = ()  # codes that index rows without a system match (``code`` elements)


@dataclass(frozen=True)
class ReferenceValue:
    type: str | None
    id: str | None
    url: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class RangeValue:
    """date (epoch ms), number and quantity tests: ``prefix`` applied to [low, high] around ``value``."""

    prefix: str
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None
    canonical: bool = False  # low/high/value were converted to the canonical unit ``code``


@dataclass(frozen=True)
class UriValue:
    uri: str
    mode: str  # eq | below | above


@dataclass(frozen=True)
class ParamTest:
    """``param`` matches any of ``values`` (OR). ``negate`` (token :not, :not-in) excludes instead."""

    param: SearchParam
    table: str  # which index kind to read: string token reference date number quantity uri
    key: int
    values: tuple[Any, ...]
    negate: bool = False


@dataclass(frozen=True)
class CompositeTest:
    param: SearchParam
    values: tuple[tuple[tuple[str, int, Any], ...], ...]  # OR of AND of (table, component key, value)


@dataclass(frozen=True)
class Missing:
    table: str
    key: int
    missing: bool


@dataclass(frozen=True)
class IdTest:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class LastUpdatedTest:
    values: tuple[RangeValue, ...]


@dataclass(frozen=True)
class Chain:
    """``key`` (a reference parameter) points at a resource of ``target_type`` matching ``inner``."""

    key: int
    target_type: str
    inner: tuple[Any, ...]  # AND of conditions on the target


@dataclass(frozen=True)
class AnyOf:
    options: tuple[Any, ...]


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Any, ...]


@dataclass(frozen=True)
class Has:
    """Some ``source_type`` resource whose ``key`` reference points here matches ``inner``."""

    source_type: str
    key: int
    inner: tuple[Any, ...]


@dataclass(frozen=True)
class Compartment:
    compartment_type: str
    compartment_id: str
    keys: tuple[int, ...]  # reference parameters of the searched type that place it in the compartment
    is_self: bool = False  # searching the compartment's own type: match the id


@dataclass(frozen=True)
class InCompartments:
    """In the compartment of any of ``ids`` (None: of any ``compartment_type`` resource) through the
    reference parameters ``keys``; ``is_self`` matches the compartment type's own resources by id.

    Built by bulk export for cohorts (thousands of children), never parsed from a query string: each
    backend binds the ids as one value, not one parameter per id.
    """

    compartment_type: str
    ids: tuple[str, ...] | None
    keys: tuple[int, ...] = ()
    is_self: bool = False


@dataclass(frozen=True)
class SortKey:
    name: str  # parameter code, or _id / _lastUpdated
    table: str | None  # index table for parameters, None for resource columns
    key: int
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str | None  # None with wildcard: any type
    keys: tuple[int, ...]  # reference keys to follow (every reference param of source for "*")
    target_type: str | None
    iterate: bool
    text: str  # as written, for the self link


@dataclass
class SearchQuery:
    resource_types: tuple[str, ...]  # one for a type search, several/all for a system search
    conditions: tuple[Any, ...] = ()
    count: int = 20
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    total: str = "none"  # none | estimate | accurate
    summary: str | None = None
    elements: tuple[str, ...] = ()
    cursor: dict[str, Any] | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    base_url: str = ""
    system_level: bool = False
    compartment: tuple[str, str] | None = None
    max_include: int = 1000
    # Who may see what (fhir_server.search.access.Access), set by consent enforcement; None: no limit.
    access: Any = None


# --- helpers ---------------------------------------------------------------------------------------


def _bad(name: str, message: str) -> FhirError:
    return FhirError(400, f"Invalid search parameter '{name}': {message}", code="invalid", expression=[name])


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` unless escaped with a backslash; unescape ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    if "\\" not in value:  # nothing escaped (nearly every value): the plain split, in C
        return value.split(sep)
    parts, buf, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            buf.append(value[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r"\\([\\,|$])", r"\1", value)


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def page_cursors(
    rows: Sequence[Any],
    position: Callable[[Any, str], str],
    *,
    backwards: bool,
    more: bool,
    cursor: dict[str, Any] | None,
    rid_step: int = 1,
) -> tuple[str | None, str | None]:
    """(next, previous) cursors of a page fetched by keyset paging, for every backend alike.

    ``position(row, direction)`` encodes a row's sort keys; ``more`` says a row beyond the page exists in
    the direction read. The page before an empty one starts at the cursor's own row: ``rid_step`` steps
    past it in the order row ids are read.
    """
    if rows:
        if backwards:
            return position(rows[-1], "n"), (position(rows[0], "p") if more else None)
        return (position(rows[-1], "n") if more else None), (
            position(rows[0], "p") if cursor is not None else None
        )
    if cursor is not None and not backwards:
        return None, encode_cursor({"k": cursor["k"], "r": cursor["r"] + rid_step, "d": "p"})
    return None, None


def decode_cursor(text: str) -> dict[str, Any]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise _bad("_cursor", "not a cursor this server issued") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("r"), int)
        or isinstance(data.get("r"), bool)
        or not isinstance(data.get("k"), list)
        # sort keys are the scalars the server wrote into it (a client's objects would reach the SQL)
        or not all(v is None or isinstance(v, str | int | float) for v in data["k"])
        or data.get("d", "n") not in ("n", "p")
    ):
        raise _bad("_cursor", "not a cursor this server issued")
    return data


def _split_prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


# --- value parsers ---------------------------------------------------------------------------------


def _date_value(name: str, raw: str) -> RangeValue:
    prefix, text = _split_prefix(raw)
    r = date_range(text)
    if r is None:
        raise _bad(name, f"'{raw}' is not a valid date (expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]])")
    return RangeValue(prefix, float(r[0]), float(r[0]), float(r[1]))


def _number_parts(name: str, raw: str) -> tuple[str, Decimal, Decimal, Decimal]:
    prefix, text = _split_prefix(raw)
    rng = implicit_range(text)
    if rng is None:
        raise _bad(name, f"'{raw}' is not a number")
    return prefix, *rng


def _number_value(name: str, raw: str) -> RangeValue:
    prefix, value, low, high = _number_parts(name, raw)
    return RangeValue(prefix, float(value), float(low), float(high))


def _quantity_value(name: str, raw: str) -> RangeValue:
    parts = split_escaped(raw, "|")
    if len(parts) not in (1, 3):
        raise _bad(name, f"'{raw}' is not [prefix]number[|system|code]")
    prefix, value, low, high = _number_parts(name, parts[0])
    system = _unescape(parts[1]) or None if len(parts) == 3 else None
    code = _unescape(parts[2]) or None if len(parts) == 3 else None
    canon = canonical_unit(system, code)
    if canon:
        f = Decimal(repr(canon[1]))
        return RangeValue(prefix, float(value * f), float(low * f), float(high * f), system, canon[0], True)
    return RangeValue(prefix, float(value), float(low), float(high), system, code)


def _with_bare_codes(value: CodeSetValue, implied: frozenset[str | None]) -> CodeSetValue:
    """Let index rows without a system match by code, for ``code`` elements (system implied by binding).

    A ``code`` element's system is the one of its bound value set, so its code is in the value set
    when (that system, code) is. When the element's system cannot be known (None in ``implied``),
    the value set's codes are the only namespace there is and the code alone decides.
    """
    if not implied:
        return value
    any_system = None in implied
    bare = sorted({c for s, c in value.pairs if any_system or s in implied})
    return CodeSetValue(value.pairs, tuple(bare))


def _token_value(raw: str) -> TokenValue:
    parts = split_escaped(raw, "|")
    if len(parts) == 1:
        return TokenValue(None, _unescape(parts[0]))
    system, code = _unescape(parts[0]), _unescape("|".join(parts[1:]))
    return TokenValue(system, code or None)


_STRING_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)[0-9]")


# --- parser ----------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, base_url: str, strict: bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.strict = strict
        self.ignored: list[str] = []  # lenient mode: what the searchset's outcome entry reports

    def unknown(self, name: str, message: str) -> None:
        if self.strict:
            raise FhirError(
                400,
                f"Unknown or unsupported search parameter '{name}': {message}",
                code="not-supported",
                expression=[name],
            )
        self.ignored.append(
            f"Unknown or unsupported search parameter '{name}' was ignored ({message});"
            " send 'Prefer: handling=strict' to have such searches refused"
        )

    def condition(self, rtype: str, name: str, raw: str, depth: int = 0) -> Any | None:
        """One ``name=value`` on ``rtype`` (name may chain); None when ignored."""
        if depth > 4:
            raise _bad(name, "chains and _has are limited to 4 levels")
        if name.startswith("_has:"):
            return self._has(rtype, name, raw, depth)
        if "." in name:
            return self._chain(rtype, name, raw, depth)
        code, _, modifier = name.partition(":")
        if code == "_id":
            if modifier and modifier != "missing":
                raise _bad(name, f"unknown modifier ':{modifier}'")
            if modifier == "missing":
                if raw not in ("true", "false"):
                    raise _bad(name, ":missing takes true or false")
                return AnyOf(()) if raw == "true" else AnyOf((AllOf(()),))
            ids = tuple(_unescape(v) for v in split_escaped(raw, ",") if v)
            if not ids:
                raise _bad(name, "empty value")
            return IdTest(ids)
        if code == "_lastUpdated":
            if modifier:
                raise _bad(name, f"unknown modifier ':{modifier}'")
            return LastUpdatedTest(tuple(_date_value(name, v) for v in split_escaped(raw, ",")))
        param = registry.get(rtype, code)
        if param is None:
            builder = registry.computed(rtype, code)
            if builder is not None:
                return builder(self, name, raw, depth)
            self.unknown(name, f"not defined for {rtype}")
            return None
        registry.check_usable(param, name)
        return self._param_test(param, name, modifier, raw)

    def _param_test(self, param: SearchParam, name: str, modifier: str, raw: str) -> Any:
        kind = param.type
        table = {"composite": "composite"}.get(kind, kind)
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise _bad(name, ":missing takes true or false")
            if kind == "composite":
                first = (
                    registry.component_param(param.resource_type, param.components[0])
                    if param.components
                    else None
                )
                if first is None:
                    raise _bad(name, "composite definition cannot be resolved")
                return Missing(first.type, param.sub_key("#0"), raw == "true")
            return Missing(table, param.key, raw == "true")
        type_hint = None
        if modifier and modifier not in MODIFIERS.get(kind, frozenset()):
            if kind == "reference" and definitions.is_resource_type(modifier):
                type_hint = modifier
            else:
                raise _bad(name, f"unknown modifier ':{modifier}' for a {kind} parameter")
        if raw == "":
            raise _bad(name, "empty value")
        values = [v for v in split_escaped(raw, ",")]
        if kind == "string":
            out: list[Any] = []
            for v in values:
                text = _unescape(v)
                if _STRING_PREFIX.match(text) and modifier != "exact":
                    raise _bad(name, f"a string parameter takes no prefix ('{text[:2]}')")
                if modifier == "exact":
                    out.append(StringValue(text, "exact"))
                else:
                    out.append(
                        StringValue(normalize(text), "contains" if modifier == "contains" else "start")
                    )
            return ParamTest(param, "string", param.key, tuple(out))
        if kind == "token":
            if modifier == "text":
                return ParamTest(
                    param,
                    "string",
                    param.sub_key(":text"),
                    tuple(StringValue(normalize(_unescape(v)), "start") for v in values),
                )
            if modifier == "of-type":
                out = []
                for v in values:
                    parts = split_escaped(v, "|")
                    if len(parts) != 3 or not parts[1] or not parts[2]:
                        raise _bad(name, ":of-type takes system|code|value")
                    out.append(
                        OfTypeValue(_unescape(parts[0]) or None, _unescape(parts[1]), _unescape(parts[2]))
                    )
                return ParamTest(param, "token", param.sub_key(":of-type"), tuple(out))
            implied = implied_code_systems(param.resource_type, param.expression)
            if modifier in ("in", "not-in"):
                return ParamTest(
                    param,
                    "token",
                    param.key,
                    tuple(_with_bare_codes(self._code_set(name, v), implied) for v in values),
                    negate=modifier == "not-in",
                )
            tokens = []
            for v in values:
                token = _token_value(v)
                if token.system and token.system in implied:
                    token = TokenValue(token.system, token.code, implicit=True)
                tokens.append(token)
            return ParamTest(param, "token", param.key, tuple(tokens), negate=modifier == "not")
        if kind == "reference":
            if modifier == "identifier":
                return ParamTest(
                    param, "token", param.sub_key(":identifier"), tuple(_token_value(v) for v in values)
                )
            return ParamTest(
                param,
                "reference",
                param.key,
                tuple(self._reference(name, _unescape(v), type_hint, param) for v in values),
            )
        if kind == "date":
            return ParamTest(param, "date", param.key, tuple(_date_value(name, v) for v in values))
        if kind == "number":
            return ParamTest(param, "number", param.key, tuple(_number_value(name, v) for v in values))
        if kind == "quantity":
            return ParamTest(param, "quantity", param.key, tuple(_quantity_value(name, v) for v in values))
        if kind == "uri":
            mode = modifier if modifier in ("below", "above") else "eq"
            return ParamTest(param, "uri", param.key, tuple(UriValue(_unescape(v), mode) for v in values))
        if kind == "composite":
            return self._composite(param, name, values)
        raise _bad(name, f"parameter type {kind} is not searchable")

    def _composite(self, param: SearchParam, name: str, values: list[str]) -> CompositeTest:
        comps = [registry.component_param(param.resource_type, c) for c in param.components]
        if not comps or any(c is None for c in comps):
            raise _bad(name, "composite definition cannot be resolved")
        options = []
        for v in values:
            parts = split_escaped(v, "$")
            if len(parts) != len(comps):
                raise _bad(name, f"expects {len(comps)} '$'-separated components")
            tests: list[tuple[str, int, Any]] = []
            for i, (comp, part) in enumerate(zip(comps, parts, strict=True)):
                assert comp is not None
                key = param.sub_key(f"#{i}")
                kind = comp.type
                if kind == "token":
                    tests.append(("token", key, _token_value(part)))
                elif kind == "string":
                    tests.append(("string", key, StringValue(normalize(_unescape(part)), "start")))
                elif kind == "date":
                    tests.append(("date", key, _date_value(name, part)))
                elif kind == "number":
                    tests.append(("number", key, _number_value(name, part)))
                elif kind == "quantity":
                    tests.append(("quantity", key, _quantity_value(name, part)))
                elif kind == "reference":
                    tests.append(("reference", key, self._reference(name, _unescape(part), None, comp)))
                elif kind == "uri":
                    tests.append(("uri", key, UriValue(_unescape(part), "eq")))
                else:
                    raise _bad(name, f"component type {kind} not supported")
            options.append(tuple(tests))
        return CompositeTest(param, tuple(options))

    def _code_set(self, name: str, url: str) -> CodeSetValue:
        try:
            from fhir_server.terminology import expand_codes  # type: ignore[attr-defined]
        except ImportError as exc:
            raise FhirError(
                400,
                f"'{name}': value-set modifiers need the terminology service",
                code="not-supported",
                expression=[name],
            ) from exc
        try:
            codes = expand_codes(_unescape(url))
        except FhirError:
            raise
        except Exception as exc:
            raise _bad(name, f"value set '{url}' cannot be expanded: {exc}") from exc
        if codes is None:
            raise _bad(name, f"unknown value set '{url}'")
        return CodeSetValue(tuple(sorted((s, c) for s, c in codes)))

    def _reference(self, name: str, value: str, type_hint: str | None, param: SearchParam) -> ReferenceValue:
        if not value:
            raise _bad(name, "empty reference")
        if self.base_url and value.startswith(self.base_url + "/"):
            value = value[len(self.base_url) + 1 :]
        if "://" in value or value.startswith("urn:"):
            url, _, version = value.partition("|")
            return ReferenceValue(None, None, url, version or None)
        parts = value.split("/")
        if len(parts) == 4 and parts[2] == "_history":
            parts = parts[:2]
        if len(parts) == 2:
            rtype, rid = parts
            if not definitions.is_resource_type(rtype):
                raise _bad(name, f"'{rtype}' is not a resource type")
            if type_hint and type_hint != rtype:
                raise _bad(name, f"reference type {rtype} contradicts modifier :{type_hint}")
            return ReferenceValue(rtype, rid)
        if len(parts) != 1:
            raise _bad(name, f"'{value}' is not an id, Type/id or absolute URL")
        if type_hint is None and len(param.targets) == 1:
            type_hint = param.targets[0]
        return ReferenceValue(type_hint, value)

    def _chain(self, rtype: str, name: str, raw: str, depth: int) -> Any | None:
        head, _, rest = name.partition(".")
        code, _, hint = head.partition(":")
        param = registry.get(rtype, code)
        if param is None:
            self.unknown(name, f"'{code}' is not defined for {rtype}")
            return None
        if param.type != "reference":
            raise _bad(name, f"cannot chain through '{code}', a {param.type} parameter")
        registry.check_usable(param, name)
        if hint and not definitions.is_resource_type(hint):
            raise _bad(name, f"unknown type '{hint}' in chain")
        targets = [hint] if hint else list(param.targets)
        inner_code = rest.split(".", 1)[0].split(":", 1)[0]
        options = []
        for target in targets:
            if not inner_code.startswith("_") and registry.get(target, inner_code) is None:
                continue
            inner = self.condition(target, rest, raw, depth + 1)
            if inner is None:
                continue
            options.append(Chain(param.key, target, (inner,)))
        if not options:
            if hint or len(targets) <= 1:
                raise _bad(
                    name,
                    f"'{inner_code}' is not a search parameter of {' or '.join(targets) or 'the target'}",
                )
            raise _bad(name, f"no target type of '{code}' has a parameter '{inner_code}'")
        return options[0] if len(options) == 1 else AnyOf(tuple(options))

    def _has(self, rtype: str, name: str, raw: str, depth: int) -> Any:
        parts = name.split(":", 3)
        if len(parts) < 4 or not parts[3]:
            raise _bad(name, "expected _has:Type:reference:parameter")
        _, source, ref_code, rest = parts
        if not definitions.is_resource_type(source):
            raise _bad(name, f"'{source}' is not a resource type")
        ref = registry.get(source, ref_code)
        if ref is None or ref.type != "reference":
            raise _bad(name, f"'{ref_code}' is not a reference parameter of {source}")
        if ref.targets and rtype not in ref.targets:
            raise _bad(name, f"{source}.{ref_code} cannot refer to {rtype}")
        inner = self.condition(source, rest, raw, depth + 1)
        if inner is None:
            raise _bad(name, f"'{rest}' is not a search parameter of {source}")
        return Has(source, ref.key, (inner,))


def _include(name: str, raw: str, reverse: bool, types: tuple[str, ...]) -> Include:
    modifier = name.partition(":")[2]
    if modifier not in ("", "iterate", "recurse"):
        raise _bad(name, f"unknown modifier ':{modifier}'")
    iterate = modifier in ("iterate", "recurse")
    if raw == "*":
        return Include(None, (), None, iterate, raw)
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise _bad(name, f"'{raw}' is not Type:parameter[:targetType]")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not definitions.is_resource_type(source) or (target and not definitions.is_resource_type(target)):
        raise _bad(name, f"unknown resource type in '{raw}'")
    if code == "*":
        keys = tuple(p.key for p in registry.parameters_for(source).values() if p.type == "reference")
        return Include(source, keys, target, iterate, raw)
    param = registry.get(source, code)
    if param is None or param.type != "reference":
        raise _bad(name, f"'{code}' is not a reference parameter of {source}")
    registry.check_usable(param, name)
    if target and param.targets and target not in param.targets:
        raise _bad(name, f"{source}.{code} cannot refer to {target}")
    return Include(source, (param.key,), target, iterate, raw)


def _sort(raw: str, types: tuple[str, ...]) -> tuple[SortKey, ...]:
    keys = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        desc = item.startswith("-")
        code = item.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, None, 0, desc))
            continue
        if len(types) != 1:
            raise _bad("_sort", f"'{code}': only _id and _lastUpdated sort a search over several types")
        param = registry.get(types[0], code)
        if param is None:
            raise _bad("_sort", f"'{code}' is not a search parameter of {types[0]}")
        if param.type not in SORTABLE:
            raise _bad("_sort", f"'{code}' ({param.type}) cannot be sorted")
        registry.check_usable(param, "_sort")
        keys.append(SortKey(code, param.type, param.key, desc))
    if len(keys) > 5:
        raise _bad("_sort", "at most 5 sort keys")
    return tuple(keys)


def parse_search(
    resource_type: str | None,
    params: list[tuple[str, str]],
    *,
    base_url: str,
    strict: bool,
    default_count: int,
    max_count: int,
    compartment: tuple[str, str] | None = None,
) -> SearchQuery:
    """Parse the query of ``GET [base]/[type]?...`` (or a system search when type is None)."""
    parser = _Parser(base_url, strict)
    if resource_type is not None and not definitions.is_resource_type(resource_type):
        raise FhirError(404, f"Unknown resource type '{resource_type}'", code="not-supported")
    query = SearchQuery(
        resource_types=(), base_url=base_url.rstrip("/"), count=default_count, compartment=compartment
    )
    # Resource types first: _type narrows a system search.
    if resource_type is not None:
        types: tuple[str, ...] = (resource_type,)
    else:
        query.system_level = True
        requested: list[str] = []
        for name, value in params:
            if name == "_type":
                for t in value.split(","):
                    if not definitions.is_resource_type(t.strip()):
                        raise _bad("_type", f"'{t}' is not a resource type")
                    requested.append(t.strip())
                query.applied.append((name, value))
        types = tuple(dict.fromkeys(requested)) or tuple(sorted(definitions.resource_types()))
        if compartment:
            members = definitions.compartment(compartment[0])
            types = tuple(t for t in types if t in members or t == compartment[0])
    query.resource_types = types
    conditions: list[Any] = []
    if compartment is not None:
        conditions.append(_compartment(types, compartment))
    for name, value in params:
        if name in _CONTROLS:
            _control(query, name, value, max_count, types)
            continue
        if name.startswith(("_include", "_revinclude")):
            base = name.split(":", 1)[0]
            if base in ("_include", "_revinclude"):
                inc = _include(name, value, base == "_revinclude", types)
                if base == "_include":
                    query.includes += (inc,)
                else:
                    query.revincludes += (inc,)
                query.applied.append((name, value))
                continue
        if len(types) == 1:
            cond = parser.condition(types[0], name, value)
        else:
            cond = _common_condition(parser, types, name, value)
        if cond is not None:
            conditions.append(cond)
            query.applied.append((name, value))
    query.conditions = tuple(conditions)
    query.warnings.extend(dict.fromkeys(parser.ignored))
    return query


def _common_condition(parser: _Parser, types: tuple[str, ...], name: str, value: str) -> Any | None:
    """A parameter on a system search: allowed when every searched type defines it the same way."""
    code = name.split(":", 1)[0].split(".", 1)[0]
    if code in ("_id", "_lastUpdated"):
        return parser.condition(types[0], name, value)
    per_type = [parser.condition(t, name, value) for t in types if registry.get(t, code) is not None]
    if not per_type or len(per_type) != len(types):
        parser.unknown(name, "not defined for every searched type")
        return None
    return AnyOf(tuple(per_type)) if len(per_type) > 1 else per_type[0]


def _compartment(types: tuple[str, ...], compartment: tuple[str, str]) -> Any:
    ctype, cid = compartment
    members = definitions.compartment(ctype)
    if not members:
        raise FhirError(404, f"Unknown compartment '{ctype}'", code="not-found")
    options = []
    for t in types:
        if t == ctype:
            options.append(Compartment(ctype, cid, (), is_self=True))
            continue
        codes = members.get(t)
        if not codes:
            if len(types) == 1:
                raise FhirError(400, f"{t} is not part of the {ctype} compartment", code="invalid")
            continue
        keys = tuple(p.key for c in codes if (p := registry.get(t, c)) is not None)
        if keys:
            options.append(Compartment(ctype, cid, keys))
    return options[0] if len(options) == 1 else AnyOf(tuple(options))


def _control(query: SearchQuery, name: str, value: str, max_count: int, types: tuple[str, ...]) -> None:
    if name == "_count":
        try:
            count = int(value)
        except ValueError as exc:
            raise _bad(name, f"'{value}' is not a whole number") from exc
        if count < 0:
            raise _bad(name, "must not be negative")
        if count > max_count:
            query.warnings.append(f"_count={count} exceeds the server maximum; {max_count} used instead")
            count = max_count
        query.count = count
        query.applied.append((name, str(count)))
        if count == 0:
            query.summary = query.summary or "count"
    elif name == "_sort":
        query.sort = _sort(value, types)
        query.applied.append((name, value))
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise _bad(name, "use none, estimate or accurate")
        query.total = value
        query.applied.append((name, value))
    elif name == "_summary":
        if value not in SUMMARY_MODES:
            raise _bad(name, f"use one of {', '.join(SUMMARY_MODES)}")
        query.summary = value
        query.applied.append((name, value))
    elif name == "_elements":
        query.elements = tuple(e.strip() for e in value.split(",") if e.strip())
        query.applied.append((name, value))
    elif name == "_cursor":
        query.cursor = decode_cursor(value)
    # _type was handled with the types; _format and _pretty belong to the HTTP layer.
    if query.summary == "count":
        query.total = "accurate"
