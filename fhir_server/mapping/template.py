"""Rendering of the resource templates written in mapping specs.

A template is plain FHIR JSON with placeholders and a few directives:

- ``"{name}"`` alone in a string is the value of field ``name`` (any JSON type); inside longer text it is
  interpolated, and the whole string disappears when any placeholder in it has no value.
  ``{name.part}`` reaches into an object value; ``{#ref}`` is the ``fullUrl`` of the resource named
  ``ref`` in the same record; ``{@CONSTANT}`` or ``{@function:ARG:$field}`` comes from
  :mod:`fhir_server.canonical` (arguments in capitals are its constants, ``$x`` are field values).
- ``{"$if": "name", "then": ..., "else": ...}`` (``"!name"`` negates; ``"$eq"`` compares).
- ``{"$each": "name", "fields": {...}, "do": ...}`` repeats ``do`` for each item of a list field, with the
  item's own fields evaluated first; inside a list the results are spliced in.
- ``{"$first": [a, b, ...]}`` is the first alternative that renders to something.
Objects, lists and strings that end up empty are dropped, so optional data simply vanishes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from fhir_server import canonical

_PLACEHOLDER = re.compile(r"\{([@#]?[^{}\s]+)\}")
_MISSING = object()


class TemplateError(Exception):
    """A mapping spec that asks for something impossible (unknown constant or reference)."""


def lookup_path(scope: Mapping[str, Any], path: str) -> Any:
    """``a.b.c`` from nested dicts; missing parts give None."""
    head, _, rest = path.partition(".")
    value = scope.get(head)
    for part in rest.split(".") if rest else []:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            value = value[index] if index < len(value) else None
        else:
            return None
    return value


def canonical_value(expr: str, scope: Mapping[str, Any]) -> Any:
    """``CONSTANT`` or ``function:ARG:$field`` from the canonical module."""
    name, *args = expr.split(":")
    target = getattr(canonical, name, _MISSING)
    if target is _MISSING:
        raise TemplateError(f"fhir_server.canonical has no {name}")
    if not args:
        if callable(target):
            raise TemplateError(f"canonical.{name} needs arguments")
        return target
    values: list[Any] = []
    for arg in args:
        if arg.startswith("$"):
            value = lookup_path(scope, arg[1:])
            if value in (None, ""):
                return None
            values.append(value)
        elif arg.isupper() and hasattr(canonical, arg):
            values.append(getattr(canonical, arg))
        else:
            values.append(arg)
    return target(*values)


class Renderer:
    """Renders templates against one record's fields and the fullUrls of its resources."""

    def __init__(
        self,
        refs: Mapping[str, str],
        evaluate_fields: Callable[[dict[str, Any], Mapping[str, Any], Mapping[str, Any]], dict[str, Any]],
    ) -> None:
        self._refs = refs
        self._evaluate_fields = evaluate_fields

    def render(self, template: Any, scope: Mapping[str, Any]) -> Any:
        if isinstance(template, str):
            return self._string(template, scope)
        if isinstance(template, list):
            out: list[Any] = []
            for item in template:
                is_each = isinstance(item, dict) and "$each" in item
                value = self.render(item, scope)
                if is_each and isinstance(value, list):
                    out.extend(value)
                elif not _empty(value):
                    out.append(value)
            return out or None
        if isinstance(template, dict):
            if "$if" in template:
                return self._if(template, scope)
            if "$each" in template:
                return self._each(template, scope)
            if "$first" in template:
                for option in template["$first"]:
                    value = self.render(option, scope)
                    if not _empty(value):
                        return value
                return None
            result = {}
            for key, sub in template.items():
                value = self.render(sub, scope)
                if not _empty(value):
                    result[key] = value
            return result or None
        return template

    def _if(self, template: dict[str, Any], scope: Mapping[str, Any]) -> Any:
        test: str = template["$if"]
        negate = test.startswith("!")
        value = lookup_path(scope, test.lstrip("!"))
        truth = (value == template["$eq"]) if "$eq" in template else not _empty(value)
        if negate:
            truth = not truth
        branch = template.get("then") if truth else template.get("else")
        return self.render(branch, scope) if branch is not None else None

    def _each(self, template: dict[str, Any], scope: Mapping[str, Any]) -> list[Any] | None:
        items = lookup_path(scope, template["$each"])
        if _empty(items):
            return None
        out = []
        for item in items if isinstance(items, list) else [items]:
            item_scope = self._evaluate_fields(template.get("fields", {}), item, scope)
            value = self.render(template["do"], item_scope)
            if not _empty(value):
                out.append(value)
        return out or None

    def _string(self, text: str, scope: Mapping[str, Any]) -> Any:
        whole = _PLACEHOLDER.fullmatch(text)
        if whole:
            return self._resolve(whole[1], scope)
        missing = False

        def replace(match: re.Match[str]) -> str:
            nonlocal missing
            value = self._resolve(match[1], scope)
            if _empty(value):
                missing = True
                return ""
            return _format(value)

        rendered = _PLACEHOLDER.sub(replace, text)
        return None if missing else rendered

    def _resolve(self, expr: str, scope: Mapping[str, Any]) -> Any:
        if expr.startswith("@"):
            return canonical_value(expr[1:], scope)
        if expr.startswith("#"):
            if expr[1:] not in self._refs:
                return None
            return self._refs[expr[1:]]
        return lookup_path(scope, expr)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}
