"""Slice matching: which slice of a sliced element does each repetition belong to?

Discriminators (value, pattern, type, profile, exists) are turned once per slice into small checks
(cached on the slice node) so assigning a repetition is a few dictionary walks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_server.validation.model import Node, type_key

# (item, item type code) -> True when the item conforms to the profile url
ProfileCheck = Callable[[Any, str, str], bool]

_CACHE_ATTR = "_discriminator_checks"


@cache
def _segments(path: str) -> tuple[str, ...]:
    """Split a discriminator path on dots outside parentheses and quotes (urls contain dots)."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(path):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif ch == "." and not quoted and depth == 0:
            parts.append(path[start:i])
            start = i + 1
    parts.append(path[start:])
    return tuple(parts)


def values_at(item: Any, path: str) -> list[Any]:
    """Values reached from ``item`` by a discriminator path ("coding.code", "url", "$this")."""
    current = [item]
    if path in ("$this", ""):
        return current
    for seg in _segments(path):
        nxt: list[Any] = []
        if seg.startswith("extension(") and seg.endswith(")"):
            url = seg[len("extension(") : -1].strip("'\"")
            for c in current:
                if isinstance(c, dict):
                    nxt.extend(
                        e for e in c.get("extension", ()) if isinstance(e, dict) and e.get("url") == url
                    )
            current = nxt
            continue
        for c in current:
            if not isinstance(c, dict):
                continue
            if seg == "value" and "value" not in c:
                v = next((c[k] for k in c if k.startswith("value")), None)
            else:
                v = c.get(seg)
            if v is None:
                continue
            if isinstance(v, list):
                nxt.extend(v)
            else:
                nxt.append(v)
        current = nxt
    return current


def matches_pattern(actual: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every property of ``pattern`` appears (recursively) in ``actual``."""
    if isinstance(pattern, dict):
        if not isinstance(actual, dict):
            return False
        return all(k in actual and matches_pattern(actual[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(actual, list):
            return False
        return all(any(matches_pattern(a, p) for a in actual) for p in pattern)
    return actual == pattern


def _descendant(node: Node, path: str, want_fixed: bool = False) -> Node | None:
    if path in ("$this", ""):
        return node
    return _walk(node, _segments(path), want_fixed)


def _walk(current: Node, segs: tuple[str, ...], want_fixed: bool) -> Node | None:
    """The element ``segs`` leads to. Through a sliced element (R4 profiling: a discriminator path may
    pass through slices, e.g. the blood-pressure profile's ``code.coding.code`` reaches the fixed code of
    the ``coding:SBPCode`` slice), the element itself is tried first, then each of its slices."""
    if not segs:
        return current
    seg, rest = segs[0], segs[1:]
    if seg.startswith("extension("):
        url = seg[len("extension(") : -1].strip("'\"")
        ext = current.children.get("extension")
        if ext is not None:
            for s in ext.slices:
                if any(url in t.profiles for t in s.types) or _fixed_url(s) == url:
                    return _walk(s, rest, want_fixed)
        return None
    child = current.children.get(seg)
    if child is None:
        return None
    found = _walk(child, rest, want_fixed)
    if (found is not None and (not want_fixed or found.fixed is not None)) or not child.slices:
        return found
    for s in sorted(child.slices, key=lambda s: -s.min):
        candidate = _walk(s, rest, want_fixed)
        if candidate is not None and candidate.fixed is not None:
            return candidate
    return found


def _fixed_url(node: Node) -> str | None:
    url = node.children.get("url")
    if url is not None and url.fixed is not None:
        return url.fixed[1]
    return None


def _build(slice_node: Node, discriminators: tuple[tuple[str, str], ...]) -> list[Callable[..., bool]] | None:
    checks: list[Callable[..., bool]] = []
    for kind, path in discriminators:
        if kind in ("value", "pattern"):
            expected: tuple[str, Any] | None = None
            if path == "url" and slice_node.types and slice_node.types[0].code == "Extension":
                profiles = slice_node.types[0].profiles
                if profiles:
                    expected = ("fixed", profiles[0])
                else:
                    fixed = _fixed_url(slice_node)
                    expected = ("fixed", fixed) if fixed is not None else None
            else:
                target = _descendant(slice_node, path, want_fixed=True)
                expected = target.fixed if target is not None else None
            if expected is None:
                return None
            mode, want = expected
            segments = _segments(path)
            if mode == "fixed" and len(segments) == 1 and _plain_segment(segments[0]):
                checks.append(_fixed_child(segments[0], want))
            elif mode == "fixed":
                checks.append(lambda item, _t, p=path, w=want: any(v == w for v in values_at(item, p)))
            else:
                checks.append(
                    lambda item, _t, p=path, w=want: any(matches_pattern(v, w) for v in values_at(item, p))
                )
        elif kind == "type":
            target = _descendant(slice_node, path)
            if target is None:
                return None
            codes = {type_key(t.code) for t in target.types}
            if path in ("$this", ""):
                checks.append(lambda item, t, c=codes: type_key(t) in c if t else False)
            else:
                checks.append(
                    lambda item, _t, p=path, c=codes: any(
                        isinstance(v, dict) and v.get("resourceType") in c for v in values_at(item, p)
                    )
                )
        elif kind == "exists":
            target = _descendant(slice_node, path)
            if target is None:
                return None
            must = target.min > 0
            checks.append(lambda item, _t, p=path, m=must: bool(values_at(item, p)) == m)
        elif kind == "profile":
            target = _descendant(slice_node, path)
            profiles = [p for t in (target.types if target else ()) for p in t.profiles]
            if not profiles:
                return None
            checks.append(lambda item, t, p=path, ps=tuple(profiles): ("profile", p, ps))  # type: ignore[misc]
        else:
            return None
    return checks


def _plain_segment(segment: str) -> bool:
    """A child name ``values_at`` reads with a plain ``get`` (not ``value``, not ``extension(...)``)."""
    return segment != "value" and "(" not in segment


def _fixed_child(name: str, want: Any) -> Callable[..., bool]:
    """``values_at(item, name)`` holds ``want``, for a one-step path (the usual ``code``, ``url``)."""

    def check(item: Any, _type_code: str) -> bool:
        if not isinstance(item, dict):
            return False
        v = item.get(name)
        if isinstance(v, list):
            return any(x == want for x in v)
        return v is not None and v == want

    return check


_PER_SLICE_ATTR = "_slice_checks"


def assign(element: Node, items: list[tuple[Any, str]], profile_check: ProfileCheck) -> list[int | None]:
    """For each (item, type code), the index of the first slice of ``element`` it matches, or None."""
    slicing = element.slicing
    if slicing is None or not slicing.discriminators:
        return [None] * len(items)
    built = element.__dict__.get(_PER_SLICE_ATTR)
    if built is None or built[0] != slicing.discriminators:
        per_slice: list[list[Callable[..., Any]] | None] = []
        for s in element.slices:
            cache = s.__dict__.setdefault(_CACHE_ATTR, {})
            if slicing.discriminators not in cache:
                cache[slicing.discriminators] = _build(s, slicing.discriminators)
            per_slice.append(cache[slicing.discriminators])
        built = (slicing.discriminators, [(i, c) for i, c in enumerate(per_slice) if c is not None])
        element.__dict__[_PER_SLICE_ATTR] = built
    candidates = built[1]
    out: list[int | None] = []
    for item, type_code in items:
        found: int | None = None
        for idx, checks in candidates:
            for check in checks:
                result = check(item, type_code)
                if result is True:
                    continue
                if result is False or not _run(check, item, type_code, profile_check):
                    break
            else:
                found = idx
                break
        out.append(found)
    return out


def _run(check: Callable[..., Any], item: Any, type_code: str, profile_check: ProfileCheck) -> bool:
    result = check(item, type_code)
    if isinstance(result, tuple):
        _tag, path, profiles = result
        targets = values_at(item, path)
        return any(profile_check(v, type_code, p) for v in targets for p in profiles)
    return bool(result)
