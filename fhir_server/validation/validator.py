"""The profile validator: walks a resource's JSON against compiled StructureDefinition snapshots.

Checks cardinality, JSON shape, types and choice types, primitive formats, fixed and pattern values,
slicing, bindings, FHIRPath invariants, extensions (known url, value type, context) and reference
target types; contained resources and Bundle entries are validated recursively. Every finding is an
OperationOutcome issue with a FHIRPath ``expression`` such as ``Patient.identifier[0].value``.

The base R4 definition of the resource type is always applied; a profile's snapshot contains the base
rules, so when profiles apply the base walk is replaced by one walk per profile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from collections.abc import Callable
from typing import Any, Literal

import orjson

from fhir_server import canonical, definitions, fhirjson
from fhir_server.validation import (
    bindings,
    bundles,
    conformance,
    invariants,
    model,
    narrative,
    questionnaire,
    slicing,
    vitals,
)
from fhir_server.validation.model import CompiledSD, Node, compiled, is_primitive

Issue = dict[str, Any]
Resolver = Callable[[str], dict[str, Any] | None]
Host = tuple[str, str]  # (type, element path) of the object an extension sits on

_CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
_INTEGERS = frozenset({"integer", "positiveInt", "unsignedInt"})
_CODED = frozenset({"code", "Coding", "CodeableConcept", "string", "uri", "Quantity"})
_CHECKED_BINDINGS = frozenset({"code", "Coding", "CodeableConcept"})  # types bindings.check judges
_CONTAINED_PATH = re.compile(r"\.contained\[\d+\]$")
_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


_NON_STRING = frozenset({"boolean", "integer", "positiveInt", "unsignedInt", "decimal"})
# R4 JSON: "arrays ... are never empty" (json.html, "JSON representation of primitive elements" and arrays)
_EMPTY_ARRAY = "An array must not be empty: omit the element instead (R4 JSON representation)"
# R4 Resource.id: the id datatype (datatypes.html#id): [A-Za-z0-9\-\.]{1,64}
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
_BAD_ID = "{!r} is not a valid resource id (R4 id: 1 to 64 of A-Z a-z 0-9 - .)"
# R4 string: "strings SHALL NOT exceed 1MB (1024*1024 characters) in size" (datatypes.html#string)
_MAX_STRING = 1024 * 1024
_STRINGS = frozenset({"string", "markdown", "code", "id"})
_TOO_LONG = "The string is {} characters long; R4 strings SHALL NOT exceed 1MB (1,048,576 characters)"
_DATES = frozenset({"date", "dateTime", "instant"})


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _real_day(value: str) -> bool:
    """A full date (YYYY-MM-DD...) names a day that exists (R4 date: "a date ... in the calendar")."""
    try:
        year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    except ValueError:
        return True  # the regex decides the shape
    if not 1 <= month <= 12:
        return False
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 1 <= day <= (29 if leap else 28)
    return 1 <= day <= _MONTH_DAYS[month]


_string_rx: dict[str, re.Pattern[str] | Literal[False] | None] = {}


def _string_regex(type_code: str) -> re.Pattern[str] | Literal[False] | None:
    """For a JSON string of ``type_code``: its regex, None (any string) or False (strings not allowed)."""
    if type_code in _string_rx:
        return _string_rx[type_code]
    result: re.Pattern[str] | Literal[False] | None
    if type_code in _NON_STRING:
        result = False
    elif type_code.startswith("http://hl7.org/fhirpath/System."):
        result = None
    else:
        pattern = definitions.primitive_pattern(type_code)
        result = re.compile(pattern, re.ASCII) if pattern else None
    _string_rx[type_code] = result
    return result


def _issue(severity: str, code: str, path: str, message: str) -> Issue:
    return {"severity": severity, "code": code, "diagnostics": f"{path}: {message}", "expression": [path]}


class _Run:
    """State of one ``validate`` call: the issues found and the resources in scope."""

    def __init__(self, resolver: Resolver | None, canonicals: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.issues: list[Issue] = []
        self.seen: set[tuple[str, str, str]] = set()
        self.resolver = resolver
        self.canonicals = canonicals
        self.bundle_canonicals: list[dict[str, dict[str, Any]]] = []  # url and url|version -> resource
        self.resource: dict[str, Any] = {}
        self.root: dict[str, Any] = {}
        self.bundle_types: list[dict[str, str]] = []  # fullUrl -> resourceType, innermost last
        self.bundle_resources: list[dict[str, dict[str, Any]]] = []
        # While a resource is walked against several definitions (profiles, a vital signs profile), the
        # core datatype walks already done: (type, JSON object, path, host). A second walk of the same
        # object at the same place against the same type would only repeat the same findings.
        self.walked: set[tuple[int, int, str, Host]] | None = None
        # While a sub-walk is memoised (``_memoised``): every finding it makes, before de-duplication,
        # and whether it read anything beyond the value and its definitions (then it is not memoised).
        self.raw: list[Any] | None = None
        self.contextual = False

    # -- issues ---------------------------------------------------------------------------------
    def add(self, severity: str, code: str, path: str, message: str) -> None:
        if self.raw is not None:
            self.raw.append((severity, code, path, message))
        key = (severity, path, message)
        if key in self.seen:
            return
        self.seen.add(key)
        self.issues.append(_issue(severity, code, path, message))

    def add_issue(self, issue: Issue) -> None:
        if self.raw is not None:
            self.raw.append({**issue, "expression": list(issue["expression"])})
        key = (issue["severity"], issue["expression"][0], issue["diagnostics"])
        if key not in self.seen:
            self.seen.add(key)
            self.issues.append(issue)

    # -- resources ------------------------------------------------------------------------------
    def resource_(self, res: Any, path: str, extra_profiles: list[str] | None = None) -> None:
        self.contextual = True  # a resource inside a sub-walk: its findings depend on its container
        if not isinstance(res, dict):
            self.add("error", "structure", path, "A resource must be a JSON object")
            return
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or not definitions.is_resource_type(rtype):
            self.add("error", "invalid", path, f"Unknown or missing resourceType {rtype!r}")
            return
        if not path:
            path = rtype
        rid = res.get("id")
        if rid is not None and (not isinstance(rid, str) or _ID.fullmatch(rid) is None):
            self.add("error", "value", f"{path}.id", _BAD_ID.format(rid))
        sds: list[CompiledSD] = []
        meta = res.get("meta")
        listed = meta.get("profile") if isinstance(meta, dict) else None
        named = (listed if isinstance(listed, list) else []) + list(extra_profiles or ())
        if rtype == "Observation" and (vital := vitals.profile_for(res)) is not None and vital not in named:
            named.append(vital)  # R4: a vital-signs Observation SHALL conform to its vital signs profile
        for url in named:
            if not isinstance(url, str):
                continue
            sd = compiled(url)
            if sd is None:
                self.add(
                    "warning",
                    "not-supported",
                    path,
                    f"Profile {url} is not known to this server; not validated against it",
                )
                continue
            if sd.type != rtype:
                self.add("error", "invalid", path, f"Profile {url} is for {sd.type}, not {rtype}")
                continue
            if sd.url.startswith(_CORE_SD) and sd.derivation == "specialization":
                continue
            if sd not in sds:
                sds.append(sd)
        if not sds:
            base = compiled(rtype)
            if base is None:
                self.add("error", "invalid", path, f"No definition for resource type {rtype}")
                return
            sds = [base]
        # %rootResource: a contained resource's container; any other resource (Bundle entries too) itself
        is_contained = bool(self.resource) and _CONTAINED_PATH.search(path) is not None
        saved = self.resource, self.root, self.walked
        self.resource = res
        self.walked = set() if len(sds) > 1 else None
        if not is_contained:
            self.root = res
        pushed = False
        if rtype == "Bundle":
            self._push_bundle(res)
            pushed = True
        try:
            # only a resource's own top level is memoised: inside a Bundle or a container the paths
            # carry the entry's index, so the same content never recurs at the same place
            memo = memo_enabled and path == rtype
            if res.get("contained"):
                self._dom3(res, path)
            for sd in sds:
                self._object(sd.root, sd, res, path, rtype, (rtype, rtype), memo)
                if sd.root.checks:
                    self._constraints(sd.root, res, path, rtype, skip_dom=is_contained)
            if rtype == "QuestionnaireResponse":
                self._questionnaire_response(res, path)
            elif rtype == "Bundle":
                for issue in bundles.check(res, path):
                    self.add_issue(issue)
            elif rtype in ("SearchParameter", "CodeSystem", "CapabilityStatement"):
                for issue in conformance.check(res, path):
                    self.add_issue(issue)
        finally:
            if pushed:
                self.bundle_types.pop()
                self.bundle_resources.pop()
                self.bundle_canonicals.pop()
            self.resource, self.root, self.walked = saved

    def _dom3(self, res: dict[str, Any], path: str) -> None:
        """dom-3: every contained resource is referenced from the rest of the resource (or refers to it)."""
        listed = res.get("contained")
        contained = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        outside = orjson.dumps({k: v for k, v in res.items() if k != "contained"})
        dumps = [orjson.dumps(c) for c in contained]
        for i, c in enumerate(contained):
            cid = c.get("id")
            if not isinstance(cid, str):
                continue
            needle = f'"#{cid}"'.encode()
            others = (d for j, d in enumerate(dumps) if j != i)
            if needle in outside or any(needle in d for d in others) or b'"#"' in dumps[i]:
                continue
            self.add(
                "error",
                "invariant",
                f"{path}.contained[{i}]",
                "Constraint failed: dom-3: 'If the "
                "resource is contained in another resource, it SHALL be referred to from elsewhere in the "
                "resource or SHALL refer to the containing resource'",
            )

    def _questionnaire_response(self, res: dict[str, Any], path: str) -> None:
        """The answers against their Questionnaire (contained, in the Bundle, stored or shipped)."""
        canonical = res.get("questionnaire")
        if not isinstance(canonical, str) or not canonical:
            return
        found = self.canonical("Questionnaire", canonical, res)
        if found is None:
            self.add(
                "warning",
                "not-found",
                f"{path}.questionnaire",
                f"The Questionnaire {canonical} is not known to this server; the answers were not "
                "checked against it",
            )
            return
        for issue in questionnaire.check_response(res, found, path, bindings.members):
            self.add_issue(issue)

    def canonical(self, resource_type: str, canonical: str, res: dict[str, Any]) -> dict[str, Any] | None:
        if canonical.startswith("#"):
            wanted = (resource_type, canonical[1:])
            for c in fhirjson.listed(res.get("contained")):
                if isinstance(c, dict) and (c.get("resourceType"), c.get("id")) == wanted:
                    return c
            return None
        for known in reversed(self.bundle_canonicals):
            hit = known.get(canonical)
            if hit is not None and hit.get("resourceType") == resource_type:
                return hit
        return self.canonicals.get((resource_type, canonical))

    def _push_bundle(self, bundle: dict[str, Any]) -> None:
        types: dict[str, str] = {}
        resources: dict[str, dict[str, Any]] = {}
        canonicals: dict[str, dict[str, Any]] = {}
        listed = bundle.get("entry")
        for entry in listed if isinstance(listed, list) else ():
            if not isinstance(entry, dict):
                continue
            res = entry.get("resource")
            full = entry.get("fullUrl")
            if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
                if isinstance(full, str):
                    types[full] = res["resourceType"]
                    resources[full] = res
                if isinstance(res.get("id"), str):
                    key = f"{res['resourceType']}/{res['id']}"
                    types.setdefault(key, res["resourceType"])
                    resources.setdefault(key, res)
                    canonicals.setdefault(key, res)
                url = res.get("url")
                if isinstance(url, str):
                    canonicals.setdefault(url, res)
                    if isinstance(res.get("version"), str):
                        canonicals[f"{url}|{res['version']}"] = res
        self.bundle_types.append(types)
        self.bundle_resources.append(resources)
        self.bundle_canonicals.append(canonicals)

    def resolve(self, reference: str) -> dict[str, Any] | None:
        if reference.startswith("#"):
            listed = self.root.get("contained")
            for c in listed if isinstance(listed, list) else ():
                if isinstance(c, dict) and c.get("id") == reference[1:]:
                    return c
            return None
        for resources in reversed(self.bundle_resources):
            hit = resources.get(reference)
            if hit is not None:
                return hit
            m = _REF_TYPE.search(reference)
            if m and reference.count("/") >= 1:
                tail = "/".join(reference.rsplit("/", 2)[-2:])
                hit = resources.get(tail)
                if hit is not None:
                    return hit
        return self.resolver(reference) if self.resolver is not None else None

    # -- objects --------------------------------------------------------------------------------
    def _object(
        self,
        node: Node,
        sd: CompiledSD,
        obj: dict[str, Any],
        path: str,
        type_code: str,
        host: Host,
        memo: bool = False,
    ) -> None:
        """Walk one JSON object against ``node``'s children. ``memo``: the children's sub-walks may be
        answered from ``_MEMO`` (a resource's top level, where the same content recurs across resources)."""
        steps = node.steps
        if steps is None:
            steps = _steps(node)
        groups: dict[str, list[tuple[str, str, Any]]] = {}
        done: set[str] = set()
        track = bool(node.required)
        companions = "_" in "".join(obj)  # element names never contain "_": only companions do
        for key, value in obj.items():
            # The common cases, decided here without building paths or calling down: a value that is
            # surely valid is done; anything else (and any doubt) takes the general path below, which
            # checks it again and words the findings.
            step = steps.get(key)
            if step is not None and not (companions and "_" + key in obj):
                kind = step[0]
                if kind is _STRING:
                    if type(value) is str:
                        rx = step[1]
                        if (
                            (rx is None or rx.fullmatch(value) is not None)
                            and len(value) <= step[2]
                            and (not step[3] or len(value) < 10 or _real_day(value))
                        ):
                            if track:
                                done.add(step[4])
                            continue
                elif kind is _CODE:
                    if (
                        type(value) is str
                        and (step[1] is None or step[1].fullmatch(value) is not None)
                        and len(value) <= step[2]
                        and bindings.has_code(step[5], value)
                    ):
                        if track:
                            done.add(step[4])
                        continue
                elif kind is _FIXED:
                    if (
                        type(value) is str
                        and value == step[5]
                        and (step[1] is None or step[1].fullmatch(value) is not None)
                        and len(value) <= step[2]
                        and (not step[3] or len(value) < 10 or _real_day(value))
                    ):
                        if track:
                            done.add(step[4])
                        continue
                elif kind is _DECIMAL:
                    if type(value) is float or type(value) is int:
                        if track:
                            done.add(step[4])
                        continue
                elif kind is _COMPLEX:
                    if type(value) is dict:
                        if memo and _memo_worth(step[1]):
                            epath = f"{path}.{key}"
                            args = (step[1], sd, value, None, epath, step[2], host)
                            self._memoised(step[1], epath, host, (step[2], value), self._item, args)
                        else:
                            self._item(step[1], sd, value, None, f"{path}.{key}", step[2], host)
                        if track:
                            done.add(step[1].name)
                        continue
                elif kind is _COMPLEX_LIST:
                    child = step[1]
                    if (
                        type(value) is list
                        and value
                        and len(value) >= child.min
                        and (child.max is None or len(value) <= child.max)
                    ):
                        epath = f"{path}.{key}"
                        code = step[2]
                        if memo and _memo_worth(child):
                            args = (child, sd, value, epath, code, host)
                            self._memoised(child, epath, host, (code, value), self._items, args)
                        else:
                            for i, v in enumerate(value):
                                self._item(child, sd, v, None, f"{epath}[{i}]", code, host)
                        if track:
                            done.add(child.name)
                        continue
                elif kind is _STRINGS_LIST:
                    if (
                        type(value) is list
                        and step[5] <= len(value) <= step[6]
                        and all(type(v) is str and _string_ok(v, step) for v in value)
                    ):
                        if track:
                            done.add(step[4])
                        continue
                elif kind is _BOOLEAN:
                    if value is True or value is False:
                        if track:
                            done.add(step[4])
                        continue
                elif type(value) is int and step[1] <= value < step[2]:  # _INTEGER
                    if track:
                        done.add(step[4])
                    continue
            if not key:
                self.add("error", "structure", path, "An element name cannot be empty")
                continue
            keys = node.keys
            if key[0] == "_":
                entry = keys.get(key[1:])
                if entry is None or not is_primitive(entry[1]):
                    self.add("error", "structure", f"{path}.{key[1:]}", f"Unknown element '{key}'")
                    continue
            else:
                entry = keys.get(key)
                if entry is None:
                    if key != "resourceType" or not (node is sd.root and sd.kind == "resource"):
                        self.add("error", "structure", f"{path}.{key}", f"Unknown element '{key}'")
                    continue
            child, code = entry
            if (
                not child.choice
                and not child.slices
                and not (companions and "_" + key in obj)
                and key[0] != "_"
                and self._simple(child, sd, key, code, value, path, host)
            ):
                if track:
                    done.add(child.name)
                continue
            groups.setdefault(child.name, []).append((key, code, value))
        if groups:
            children = node.children
            for name, group in groups.items():
                child = children[name]
                if memo and not companions and _memo_worth(child):
                    self._memoised(
                        child, path, host, group, self._element, (child, sd, group, obj, path, host)
                    )
                else:
                    self._element(children[name], sd, group, obj, path, host)
        for name, child in node.required:
            if name in groups or name in done:
                continue
            label = f"{name}[x]" if child.choice else name
            if child.min > 0:
                self.add(
                    "error",
                    "required",
                    f"{path}.{label}",
                    f"Minimum required = {child.min}, but only found 0 (from {child.sd_url})",
                )
            for s in child.slices:
                if s.min > 0:
                    self.add(
                        "error",
                        "required",
                        f"{path}.{label}",
                        f"Slice '{s.slice_name}': minimum required = {s.min}, but only found 0 "
                        f"(from {s.sd_url})",
                    )

    def _element(
        self,
        child: Node,
        sd: CompiledSD,
        group: list[tuple[str, str, Any]],
        obj: dict[str, Any],
        path: str,
        host: Host,
    ) -> None:
        if len(group) == 1 and not child.slices:
            key, code, value = group[0]
            if (
                key[0] != "_"
                and "_" + key not in obj
                and self._simple(child, sd, key, code, value, path, host)
            ):
                return
        plain = [g for g in group if not g[0].startswith("_")]
        if child.choice and len({g[0] for g in plain}) > 1:
            self.add(
                "error",
                "structure",
                f"{path}.{child.name}[x]",
                f"Only one of {', '.join(sorted(g[0] for g in plain))} is allowed",
            )
        items: list[tuple[Any, Any, str, str]] = []  # (value, _value, fhirpath, type code)
        for key, code, value in plain:
            ext = obj.get("_" + key)
            epath = f"{path}.{key}"
            if child.is_array:
                if not isinstance(value, list):
                    self.add("error", "structure", epath, "This element repeats: a JSON array is required")
                    value = [value]
                elif not value:
                    self.add("error", "structure", epath, _EMPTY_ARRAY)
                exts = ext if isinstance(ext, list) else []
                for i, v in enumerate(value):
                    items.append((v, exts[i] if i < len(exts) else None, f"{epath}[{i}]", code))
                for i in range(len(value), len(exts)):
                    items.append((None, exts[i], f"{epath}[{i}]", code))
            else:
                if isinstance(value, list):
                    self.add(
                        "error", "structure", epath, "This element does not repeat: an array is not allowed"
                    )
                    continue
                items.append((value, ext, epath, code))
        for key, code, ext in group:
            if key.startswith("_") and key[1:] not in obj:
                epath = f"{path}.{key[1:]}"
                if child.is_array and isinstance(ext, list):
                    items.extend((None, e, f"{epath}[{i}]", code) for i, e in enumerate(ext))
                else:
                    items.append((None, ext, epath, code))
        count = len(items)
        label = f"{path}.{child.name}"
        if count < child.min:
            self.add(
                "error",
                "required",
                label,
                f"Minimum required = {child.min}, but only found {count} (from {child.sd_url})",
            )
        if child.max is not None and count > child.max:
            self.add(
                "error",
                "structure",
                label,
                f"Maximum allowed = {child.max}, but found {count} (from {child.sd_url})",
            )
        targets: list[Node] = [child] * count
        if child.slices:
            targets = self._slices(child, items, label)
        for (value, ext, ipath, code), target in zip(items, targets, strict=True):
            self._item(target, sd, value, ext, ipath, code, host)

    def _items(
        self, child: Node, sd: CompiledSD, value: list[Any], epath: str, code: str, host: Host
    ) -> None:
        for i, v in enumerate(value):
            self._item(child, sd, v, None, f"{epath}[{i}]", code, host)

    def _memoised(
        self,
        node: Node,
        path: str,
        host: Host,
        content: Any,
        walk: Callable[..., None],
        args: tuple[Any, ...],
    ) -> None:
        """``walk(*args)``, or the findings it made before on the same content at the same place.

        A sub-walk's findings are a function of the element definition, the JSON content, the path and
        host, and the known definitions and terminology (``_memo_ready`` clears the memo when those
        change): unless it read its context (a reference's target, a contained resource, an invariant
        run by the FHIRPath engine, which may read %resource or today(), a datatype walk skipped because
        this resource already did it), in which case it is not memoised. Replaying the findings it made,
        in order and before de-duplication, gives exactly what walking again would.

        Callers ask ``_memo_worth`` first: where the content seldom recurs the look-up costs more than
        it saves.
        """
        try:
            dumped = orjson.dumps(content)
        except (TypeError, orjson.JSONEncodeError):
            walk(*args)
            return
        # null never occurs in valid FHIR JSON, and orjson writes NaN and infinities as null
        if len(dumped) > _MEMO_MAX_BYTES or b"null" in dumped:
            walk(*args)
            return
        key = (id(node), path, host, dumped)
        found = _MEMO.pop(key, None)
        if found is not None:
            _MEMO[key] = found  # most recently used last: the oldest are dropped first
            global memo_hits
            memo_hits += 1
            node.memo_stat[1] += 1
            for item in found:
                if type(item) is tuple:
                    self.add(*item)
                else:
                    self.add_issue(item)
            return
        outer_raw, outer_contextual = self.raw, self.contextual
        raw: list[Any] = []
        self.raw, self.contextual = raw, False
        try:
            walk(*args)
        finally:
            contextual = self.contextual
            self.raw, self.contextual = outer_raw, outer_contextual or contextual
            if outer_raw is not None:
                outer_raw.extend(raw)
        # (stored only if no definitions or terminology changed meanwhile, in another thread say)
        # Content with many findings is kept out: it seldom recurs, and a hostile client could fill the
        # memo with large lists of findings (at most _MEMO_LIMIT * (2 kB + 8 findings) are kept).
        if (
            not contextual
            and len(raw) <= _MEMO_MAX_FINDINGS
            and _memo_state[0] == (model.generation, bindings.generation)
        ):
            if len(_MEMO) >= _MEMO_LIMIT:
                for stale in list(itertools.islice(_MEMO, _MEMO_LIMIT // 4)):
                    _MEMO.pop(stale, None)  # another thread may have dropped it
            _MEMO[key] = tuple(raw)

    def _simple(
        self, child: Node, sd: CompiledSD, key: str, code: str, value: Any, path: str, host: Host
    ) -> bool:
        """The common case (one key, no primitive companion, no slices, right JSON shape): True if done."""
        epath = f"{path}.{key}"
        if child.is_array:
            if not isinstance(value, list) or not value:
                return False
            count = len(value)
            if count < child.min or (child.max is not None and count > child.max):
                return False
            for i, v in enumerate(value):
                self._item(child, sd, v, None, f"{epath}[{i}]", code, host)
            return True
        if isinstance(value, list) or child.max == 0:
            return False
        self._item(child, sd, value, None, epath, code, host)
        return True

    def _slices(self, child: Node, items: list[tuple[Any, Any, str, str]], label: str) -> list[Node]:
        assigned = slicing.assign(child, [(v, c) for v, _e, _p, c in items], self._conforms)
        counts = [0] * len(child.slices)
        rules = child.slicing.rules if child.slicing else "open"
        last_slice = -1
        seen_unmatched = False
        out: list[Node] = []
        for (_value, _ext, ipath, _code), idx in zip(items, assigned, strict=True):
            if idx is None:
                out.append(child)
                seen_unmatched = True
                if rules == "closed":
                    self.add(
                        "error",
                        "structure",
                        ipath,
                        f"This element does not match any known slice defined in {child.sd_url} "
                        "and slicing is CLOSED",
                    )
                continue
            s = child.slices[idx]
            counts[idx] += 1
            out.append(s)
            if child.slicing and child.slicing.ordered and idx < last_slice:
                self.add(
                    "error",
                    "structure",
                    ipath,
                    f"Slice '{s.slice_name}' is out of order (slicing is ordered)",
                )
            if rules == "openAtEnd" and seen_unmatched:
                self.add(
                    "error",
                    "structure",
                    ipath,
                    f"Slice '{s.slice_name}' follows unsliced content (slicing is openAtEnd)",
                )
            last_slice = max(last_slice, idx)
        for s, n in zip(child.slices, counts, strict=True):
            if n < s.min:
                self.add(
                    "error",
                    "required",
                    label,
                    f"Slice '{s.slice_name}': minimum required = {s.min}, but only found {n} "
                    f"(from {s.sd_url})",
                )
            if s.max is not None and n > s.max:
                self.add(
                    "error",
                    "structure",
                    label,
                    f"Slice '{s.slice_name}': maximum allowed = {s.max}, but found {n} (from {s.sd_url})",
                )
        return out

    def _conforms(self, item: Any, type_code: str, profile_url: str) -> bool:
        """Profile discriminator: does ``item`` validate without errors against ``profile_url``?"""
        self.contextual = True
        sd = compiled(profile_url)
        if sd is None:
            return False
        sub = _Run(self.resolver, self.canonicals)
        sub.resource, sub.root = self.resource, self.root
        if sd.kind == "resource":
            sub.resource_(item, sd.type, [profile_url])
        elif isinstance(item, dict):
            sub._object(sd.root, sd, item, sd.type, sd.type, (sd.type, sd.type))
        return not any(i["severity"] == "error" for i in sub.issues)

    # -- one value ------------------------------------------------------------------------------
    def _item(
        self, node: Node, sd: CompiledSD, value: Any, ext: Any, path: str, code: str, host: Host
    ) -> None:
        if node.content_reference:
            target = sd.by_id.get(node.content_reference.split("#", 1)[-1])
            if target is not None:
                if not isinstance(value, dict):
                    self.add("error", "structure", path, "A JSON object is required")
                    return
                self._object(target, sd, value, path, "BackboneElement", ("BackboneElement", target.path))
                self._ele1(value, path)
                if node.checks:
                    self._constraints(node, value, path, target.path)
                return
        plan = node.item_plans.get(code)
        if plan is None or plan[0] != model.generation:
            plan = _item_plan(node, code)
        kind, code, host_here = plan[1], plan[2], plan[3]
        if kind is _PRIMITIVE_ITEM:
            self._primitive(node, value, ext, path, code, host_here)
            return
        if value is None:
            self.add("error", "structure", path, "A JSON object is required, not null")
            return
        if kind is _RESOURCE_ITEM:
            self.resource_(value, path)
            return
        if not isinstance(value, dict):
            self.add("error", "structure", path, f"A JSON object is required for type {code}")
            return
        if kind is _OWN_CHILDREN:
            self._object(node, sd, value, path, code, host_here)
            type_path = node.path
        else:
            tsd = plan[4]
            if tsd is None:
                self.add("error", "structure", path, f"Unknown type {code}")
                return
            walked = self.walked
            if walked is None:
                self._object(tsd.root, tsd, value, path, code, host_here)
            else:
                done = (id(tsd), id(value), path, host_here)
                if done not in walked:
                    walked.add(done)
                    self._object(tsd.root, tsd, value, path, code, host_here)
                else:
                    self.contextual = True  # skipped because this resource walked it already
            type_path = code
        if not value or (len(value) == 1 and "id" in value):
            self._ele1(value, path)
        if code == "Extension":
            self._extension(node, value, path, host)
        elif code == "Reference":
            self._reference(node, value, path)
        elif code == "Coding":
            self._known_code(value, path)
        elif code == "Attachment":
            self._attachment(value, path)
        for prof in plan[5]:
            self._datatype_profile(prof, value, path)
        if node.fixed is not None:
            self._fixed(node, value, path)
        if node.binding is not None and code in _CODED:
            self._binding(node, code, value, path)
        if node.checks:
            self._constraints(node, value, path, type_path)

    def _ele1(self, value: dict[str, Any], path: str) -> None:
        if not value or (len(value) == 1 and "id" in value):
            self.add(
                "error",
                "invariant",
                path,
                "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'",
            )

    def _primitive(self, node: Node, value: Any, ext: Any, path: str, code: str, host: Host) -> None:
        if ext is not None:
            if not isinstance(ext, dict):
                self.add("error", "structure", path, "The '_' companion of a primitive must be a JSON object")
            else:
                esd = compiled("Element")
                if esd is not None:
                    self._object(esd.root, esd, ext, path, "Element", host)
        if value is None:
            if not (isinstance(ext, dict) and ext.get("extension")):
                self.add(
                    "error",
                    "invariant",
                    path,
                    "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'",
                )
            return
        if type(value) is str:
            rx = _string_regex(code)
            if rx is False:
                ok = False
            else:
                ok = rx is None or rx.fullmatch(value) is not None
                if ok and node.max_length is not None and len(value) > node.max_length:
                    self.add(
                        "error", "value", path, f"Value is longer than the maximum length {node.max_length}"
                    )
                if ok and code in _DATES and len(value) >= 10 and not _real_day(value):
                    self.add("error", "value", path, f"The date {value!r} does not exist in the calendar")
                    return
                if len(value) > _MAX_STRING and code in _STRINGS:
                    self.add("error", "value", path, _TOO_LONG.format(len(value)))
                    return
                if code == "xhtml":
                    for problem in narrative.check(value):
                        self.add("error", "value", path, problem)
        elif code == "boolean":
            ok = isinstance(value, bool)
        elif code in _INTEGERS:
            ok = isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
            ok = ok and (code != "positiveInt" or value > 0) and (code != "unsignedInt" or value >= 0)
        elif code == "decimal":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = code.startswith("http://hl7.org/fhirpath/System.") and isinstance(value, bool | int | float)
        if not ok:
            self.add("error", "value", path, f"The value {value!r} is not a valid {code}")
            return
        if node.fixed is not None:
            self._fixed(node, value, path)
        if node.binding is not None and code in _CODED:
            self._binding(node, code, value, path)
        if node.min_value is not None or node.max_value is not None:
            self._range(node, value, path)
        if node.checks:
            self._constraints(node, value, path, code)

    def _range(self, node: Node, value: Any, path: str) -> None:
        if node.min_value is not None and value < node.min_value[1]:
            self.add(
                "error", "value", path, f"The value {value!r} is below the minimum {node.min_value[1]!r}"
            )
        if node.max_value is not None and value > node.max_value[1]:
            self.add(
                "error", "value", path, f"The value {value!r} is above the maximum {node.max_value[1]!r}"
            )

    # -- rules on one value ---------------------------------------------------------------------
    def _fixed(self, node: Node, value: Any, path: str) -> None:
        assert node.fixed is not None
        mode, want = node.fixed
        if mode == "fixed":
            if value != want:
                self.add(
                    "error",
                    "value",
                    path,
                    f"Value must be exactly {_show(want)} (fixed in {node.sd_url}), found {_show(value)}",
                )
        elif not slicing.matches_pattern(value, want):
            self.add(
                "error", "value", path, f"Value must match the pattern {_show(want)} (from {node.sd_url})"
            )

    def _binding(self, node: Node, code: str, value: Any, path: str) -> None:
        assert node.binding is not None
        strength = node.binding.get("strength")
        if strength not in ("required", "extensible"):
            return
        url = node.binding.get("valueSet")
        message = bindings.check(code, value, node.binding)
        if message is None:
            if (
                code in _CHECKED_BINDINGS
                and isinstance(url, str)
                and url
                and not bindings.known_value_set(url)
            ):
                self.add(
                    "warning",
                    "not-found",
                    path,
                    f"The value set {url} is not known to this server; the {strength} binding was not "
                    "checked",
                )
            return
        if strength == "required":
            self.add("error", "code-invalid", path, message + " (required binding)")
        else:
            self.add("warning", "code-invalid", path, message + " (extensible binding)")

    def _constraints(self, node: Node, value: Any, path: str, type_path: str, skip_dom: bool = False) -> None:
        plan = node.check_plan
        if plan is None:
            plan = node.check_plan = tuple((c, invariants.shortcut(c)) for c in node.checks)
        engine_runs = invariants.engine_runs
        for c, fast in plan:
            if skip_dom and c.key.startswith("dom-"):
                continue  # DomainResource rules about containing apply to the container, not the contained
            result = invariants.evaluate(c, value, type_path, self.resource, self.root, fast)
            if result is True:
                continue
            if result is False:
                severity = "error" if c.severity == "error" else "warning"
                self.add(
                    severity,
                    "invariant",
                    path,
                    f"Constraint failed: {c.key}: '{c.human}' (defined in {c.source})",
                )
            else:
                self.add("information", "informational", path, f"Constraint {c.key} not checked: {result}")
        if invariants.engine_runs != engine_runs:
            self.contextual = True

    def _datatype_profile(self, url: str, value: dict[str, Any], path: str) -> None:
        psd = compiled(url)
        if psd is None:
            self.add("warning", "not-supported", path, f"Profile {url} is not known; not checked")
            return
        self._object(psd.root, psd, value, path, psd.type, (psd.type, psd.type))
        if psd.root.checks:
            self._constraints(psd.root, value, path, psd.type)

    def _extension(self, node: Node, value: dict[str, Any], path: str, host: Host) -> None:
        has_ext = "extension" in value
        has_value = any(k.startswith(("value", "_value")) for k in value)  # a primitive may be all extension
        if has_ext == has_value:
            self.add(
                "error",
                "invariant",
                path,
                "Constraint failed: ext-1: 'Must have either extensions or value[x], not both'",
            )
        url = value.get("url")
        if not isinstance(url, str):
            return
        profiles = [p for t in node.types for p in t.profiles]
        if profiles:
            for prof in profiles:
                psd = compiled(prof)
                if psd is None:
                    self.add(
                        "warning", "extension", path, f"Extension definition {prof} is not known; not checked"
                    )
                else:
                    self._extension_profile(psd, value, path, host)
            return
        if "://" not in url and not url.startswith("urn:"):
            return  # a sub-extension of a complex extension: its slice in the parent's definition checks it
        esd = compiled(url)
        if esd is None or esd.type != "Extension":
            if url.startswith(canonical.BASE):
                self.add("error", "extension", path, f"Unknown extension {url}")
            else:
                self.add("warning", "extension", path, f"Unknown extension {url}; not validated")
            return
        self._extension_profile(esd, value, path, host)

    def _extension_profile(self, esd: CompiledSD, value: dict[str, Any], path: str, host: Host) -> None:
        if esd.context and not _context_ok(esd.context, host):
            allowed = ", ".join(c.get("expression", "") for c in esd.context)
            # HL7's own R4 definitions put core extensions outside their declared contexts (e.g.
            # structuredefinition-fhir-type on ElementDefinition.type, translation on expansion.contains):
            # enforce contexts strictly for our extensions, report the others as warnings.
            severity = "error" if esd.url.startswith(canonical.BASE) else "warning"
            self.add(
                severity,
                "extension",
                path,
                f"The extension {esd.url} is not allowed on {host[1]} (allowed contexts: {allowed})",
            )
        self._object(esd.root, esd, value, path, "Extension", (esd.url, "Extension"))
        if esd.root.checks:
            self._constraints(esd.root, value, path, "Extension")

    def _attachment(self, value: dict[str, Any], path: str) -> None:
        """R4 Attachment: ``size`` is the number of bytes of the content and ``hash`` its base64 SHA-1;
        with inline ``data`` both must agree with it."""
        data = value.get("data")
        if not isinstance(data, str) or ("size" not in value and "hash" not in value):
            return
        try:
            content = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return  # the base64Binary check reports it
        size = value.get("size")
        if isinstance(size, int) and not isinstance(size, bool) and size != len(content):
            self.add(
                "error",
                "value",
                f"{path}.size",
                f"size is {size} but the data holds {len(content)} bytes (R4 Attachment.size)",
            )
        digest = value.get("hash")
        if isinstance(digest, str):
            actual = base64.b64encode(hashlib.sha1(content).digest()).decode()
            if digest.strip() != actual:
                self.add(
                    "error",
                    "value",
                    f"{path}.hash",
                    f"hash {digest!r} is not the SHA-1 of the data ({actual}) (R4 Attachment.hash)",
                )

    def _known_code(self, coding: dict[str, Any], path: str) -> None:
        """A code must exist in its code system when we hold that system in full (bound or not).

        R4 (terminologies.html): a Coding's code is defined by its system; a code the system does not
        define is an error whatever the binding, as the HL7 validator reports it. Systems that declare
        ``caseSensitive: false`` are compared case-insensitively.
        """
        system, code = coding.get("system"), coding.get("code")
        if not isinstance(system, str) or not isinstance(code, str):
            return
        codes = bindings.system_codes(system)
        if codes is None or code in codes:
            return
        folded = bindings.case_insensitive_codes(system)
        if folded is not None and code.casefold() in folded:
            return
        self.add(
            "error", "code-invalid", f"{path}.code", f"Unknown code '{code}' in the code system {system}"
        )

    def _reference(self, node: Node, value: dict[str, Any], path: str) -> None:
        ref = value.get("reference")
        if not isinstance(ref, str):
            return
        self.contextual = True  # the target's type may come from the Bundle or a contained resource
        allowed = _reference_targets(node)
        if not allowed or "Resource" in allowed:
            return
        target_type = self._reference_type(ref, path)
        if target_type is None:
            return
        if target_type not in allowed:
            self.add(
                "error",
                "structure",
                f"{path}.reference",
                f"The reference {ref!r} points to a {target_type}, but only "
                f"{', '.join(sorted(allowed))} is allowed here",
            )

    def _reference_type(self, ref: str, path: str) -> str | None:
        if ref.startswith("#"):
            if ref == "#":
                return self.resource.get("resourceType")
            target = self.resolve(ref)
            if target is None:
                self.add("error", "structure", f"{path}.reference", f"Contained resource {ref} not found")
                return None
            found = target.get("resourceType")
            return found if isinstance(found, str) else None
        for types in reversed(self.bundle_types):
            if ref in types:
                return types[ref]
        m = _REF_TYPE.search(ref)
        if m and definitions.is_resource_type(m.group(1)):
            return m.group(1)
        return None


# Kinds of ``_steps`` entries (compared by identity in the hot loop).
_STRING, _STRINGS_LIST, _BOOLEAN, _INTEGER, _CODE = "string", "strings", "boolean", "integer", "code"
_COMPLEX, _COMPLEX_LIST = "complex", "complexes"
_FIXED, _DECIMAL = "fixed", "decimal"
_NO_LIMIT = 2**63


def _string_ok(value: str, step: tuple[Any, ...]) -> bool:
    """A JSON string the primitive check would accept without a finding (``_STRING`` steps)."""
    rx = step[1]
    if rx is not None and rx.fullmatch(value) is None:
        return False
    if len(value) > step[2]:
        return False
    return not step[3] or len(value) < 10 or _real_day(value)


def _steps(node: Node) -> dict[str, tuple[Any, ...]]:
    """For each JSON key of ``node``'s children that can be decided without the general path, how.

    A child qualifies when nothing but its JSON shape and its value's format can be wrong: not a choice
    (only one of its keys may appear), not sliced, allowed at all (max > 0), no content reference, and
    for a primitive no range, maximum length, narrative or invariant to check (a bound ``code`` is
    looked up in its value set; a fixed or pattern string must equal the value). Complex children
    qualify when not a choice and not sliced: ``_item`` checks the rest.
    """
    steps: dict[str, tuple[Any, ...]] = {}
    for key, (child, code) in node.keys.items():
        if child.choice or child.slices or child.max == 0 or child.content_reference or not code:
            continue
        if not is_primitive(code):
            steps[key] = (_COMPLEX_LIST if child.is_array else _COMPLEX, child, code)
            continue
        # a binding only constrains a primitive of type code (bindings.check); strings and uris pass
        bound = None
        binding = child.binding
        if code == "code" and binding is not None and binding.get("strength") in ("required", "extensible"):
            bound = binding.get("valueSet") or None
        fixed = child.fixed
        if (
            (fixed is not None and (bound is not None or child.is_array or isinstance(fixed[1], dict | list)))
            or child.min_value is not None
            or child.max_value is not None
            or child.checks
            or child.max_length is not None
            or code == "xhtml"
        ):
            continue
        rx = _string_regex(code)
        if fixed is not None:
            # a fixed or pattern primitive: equal to the value (both modes compare primitives with ==)
            if rx is not False:
                limit = _MAX_STRING if code in _STRINGS else _NO_LIMIT
                steps[key] = (_FIXED, rx, limit, code in _DATES, child.name, fixed[1])
            continue
        if rx is False:
            if child.is_array:
                continue
            if code == "decimal":
                steps[key] = (_DECIMAL, None, None, None, child.name)
            elif code == "boolean":
                steps[key] = (_BOOLEAN, None, None, None, child.name)
            elif code in _INTEGERS:
                low = 1 if code == "positiveInt" else 0 if code == "unsignedInt" else -(2**31)
                steps[key] = (_INTEGER, low, 2**31, None, child.name)
            continue
        limit = _MAX_STRING if code in _STRINGS else _NO_LIMIT
        step = (_STRING, rx, limit, code in _DATES, child.name)
        if bound is not None:
            if child.is_array:
                continue
            step = (_CODE, rx, limit, False, child.name, bound)
        if child.is_array:
            upper = child.max if child.max is not None else _NO_LIMIT
            steps[key] = (_STRINGS_LIST, rx, limit, code in _DATES, child.name, max(child.min, 1), upper)
        else:
            steps[key] = step
    node.steps = steps
    return steps


# Kinds of ``_item_plan`` entries.
_PRIMITIVE_ITEM, _RESOURCE_ITEM, _OWN_CHILDREN, _TYPE_ITEM = "primitive", "resource", "children", "type"


def _item_plan(node: Node, code: str) -> tuple[Any, ...]:
    """What an item of ``node`` with type ``code`` needs, looked up once per node and type.

    (generation, kind, type code, host, compiled type or None, datatype profiles). The compiled type
    comes from ``model.compiled``, so the plan is redone when the known definitions change.
    """
    if not code and node.types:
        code = node.types[0].code
    host = (code, node.path)
    tsd = None
    if is_primitive(code):
        kind = _PRIMITIVE_ITEM
    elif code == "Resource" or definitions.is_resource_type(code):
        kind = _RESOURCE_ITEM
    elif node.children:
        kind = _OWN_CHILDREN
    else:
        kind = _TYPE_ITEM
        tsd = compiled(code)
    profiles = tuple(
        prof for t in node.types if t.code == code and code != "Extension" for prof in t.profiles
    )
    plan = (model.generation, kind, code, host, tsd, profiles)
    node.item_plans[code] = plan
    return plan


_REFERENCE_TARGETS = "reference targets"


def _reference_targets(node: Node) -> frozenset[str]:
    """The resource types a Reference of ``node`` may point to (its target profiles' types)."""
    plan = node.item_plans.get(_REFERENCE_TARGETS)
    if plan is not None and plan[0] == model.generation:
        return plan[1]
    allowed: set[str] = set()
    for t in node.types:
        if t.code != "Reference":
            continue
        for tp in t.target_profiles:
            tsd = compiled(tp)
            allowed.add(tsd.type if tsd is not None else tp.rsplit("/", 1)[-1])
    targets = frozenset(allowed)
    node.item_plans[_REFERENCE_TARGETS] = (model.generation, targets)
    return targets


def _context_ok(context: list[dict[str, Any]], host: Host) -> bool:
    """Is an extension with these contexts allowed on an element of type/path ``host``?"""
    host_type, host_path = host
    for c in context:
        kind, expr = c.get("type"), c.get("expression", "")
        if kind == "extension":
            if expr == host_type:
                return True
            continue
        if kind != "element":
            return True  # FHIRPath contexts are not restricted here
        if expr in ("Element", "Base", host_type, host_path):
            return True
        if expr in ("Resource", "DomainResource") and definitions.is_resource_type(host_type):
            return True
        if expr == "BackboneElement" and host_type == "BackboneElement":
            return True
    return False


def _show(value: Any) -> str:
    return orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)


def validate(
    resource: dict[str, Any],
    profile_urls: list[str] | None = None,
    *,
    resolver: Resolver | None = None,
    canonicals: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Issue]:
    """OperationOutcome issues for ``resource`` against its base R4 definition and profiles.

    Profiles are those in ``meta.profile`` that this server knows plus ``profile_urls`` (an unknown one
    gives a warning). ``resolver`` maps a reference to a resource, for invariants that ``resolve()``
    (contained resources and Bundle entries are resolved without it). ``canonicals`` holds the
    conformance resources found by ``canonicals.prefetch`` (a response's Questionnaire), keyed by
    (type, canonical as written).
    """
    from fhir_server.validation import profiles

    profiles.ensure_registered()
    _memo_ready()
    run = _Run(resolver, canonicals or {})
    token = invariants.set_resolver(run.resolve)
    try:
        run.resource_(resource, "", profile_urls)
    finally:
        invariants.reset_resolver(token)
    return run.issues


# Findings of top-level sub-walks by (element definition, path, host, JSON content): the same content
# recurs across resources (a growth Observation's category, code and unit). Bounded in entries and in
# the size of the content; cleared when definitions or terminology change.
_MEMO: dict[tuple[int, str, Host, bytes], tuple[Any, ...]] = {}
_MEMO_LIMIT = 4096
_MEMO_MAX_BYTES = 2048
_MEMO_MAX_FINDINGS = 8
_memo_state: list[tuple[int, int]] = [(-1, -1)]
_MEMO_TRIAL = 32


def _memo_worth(node: Node) -> bool:
    """Is the memo worth a look-up at this element? Where the content seldom recurs (a name, a measured
    value, a narrative), after ``_MEMO_TRIAL`` tries with few hits only one try in ``_MEMO_TRIAL`` is
    made, so the memo comes back when the content starts to recur."""
    stat = node.memo_stat
    tries = stat[0] = stat[0] + 1
    if tries >= 1024:  # forget slowly: the stream's content changes
        stat[0], stat[1] = tries // 2, stat[1] // 2
    return tries <= _MEMO_TRIAL or stat[1] * 8 >= tries or tries % _MEMO_TRIAL == 0


memo_enabled = True  # tests switch it off to compare with walking every time
memo_hits = 0  # how many sub-walks were answered from the memo (tests check it is used)


def _memo_ready() -> None:
    state = (model.generation, bindings.generation)
    if _memo_state[0] != state:
        _MEMO.clear()
        _memo_state[0] = state


def has_errors(issues: list[Issue]) -> bool:
    return any(i["severity"] in ("error", "fatal") for i in issues)
