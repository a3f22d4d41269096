"""An in-memory index of one CodeSystem: concepts by code, parents, displays per language."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.terminology._text import normalise

_PARENT_PROPERTIES = ("parent", "subsumedBy")
_INACTIVE_STATUSES = ("retired", "inactive")


@dataclass(slots=True)
class Concept:
    code: str
    display: str | None
    definition: str | None
    designations: list[dict[str, Any]]
    properties: list[dict[str, Any]]
    parents: list[str] = field(default_factory=list)
    abstract: bool = False
    inactive: bool = False
    search_text: str = ""


def _language_matches(wanted: str, actual: str | None) -> bool:
    if not actual:
        return False
    wanted, actual = wanted.lower(), actual.lower()
    return actual == wanted or actual.split("-")[0] == wanted.split("-")[0]


class CodeSystemIndex:
    """Concepts of a CodeSystem flattened for fast lookup, with the subsumption hierarchy.

    The hierarchy comes from concept nesting and from ``parent``/``subsumedBy``/``child`` properties
    (HL7 v3 code systems use the latter), so a concept may have several parents.
    """

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.url: str = resource["url"]
        self.version: str | None = resource.get("version")
        self.name: str = resource.get("name") or resource.get("title") or resource.get("id") or self.url
        self.language: str = resource.get("language") or "en"
        self.case_sensitive: bool = bool(resource.get("caseSensitive", True))
        self.content: str = resource.get("content", "complete")
        self.concepts: dict[str, Concept] = {}
        self.children: dict[str, list[str]] = {}
        self._folded: dict[str, str] = {}
        self._ancestor_cache: dict[str, frozenset[str]] = {}
        self._walk(resource.get("concept", []), None)
        self._link_properties()
        for concept in self.concepts.values():
            texts = [concept.code, concept.display or ""] + [d.get("value", "") for d in concept.designations]
            concept.search_text = normalise(" ".join(texts))
            if not self.case_sensitive:
                self._folded.setdefault(concept.code.casefold(), concept.code)

    def _walk(self, concepts: list[dict[str, Any]], parent: str | None) -> None:
        for raw in concepts:
            code = raw["code"]
            props = raw.get("property", [])
            concept = self.concepts.get(code)
            if concept is None:
                concept = Concept(
                    code=code,
                    display=raw.get("display"),
                    definition=raw.get("definition"),
                    designations=raw.get("designation", []),
                    properties=props,
                )
                self.concepts[code] = concept
            for p in props:
                if p.get("code") == "notSelectable" and p.get("valueBoolean") is True:
                    concept.abstract = True
                if p.get("code") == "status" and p.get("valueCode") in _INACTIVE_STATUSES:
                    concept.inactive = True
                if p.get("code") == "inactive" and p.get("valueBoolean") is True:
                    concept.inactive = True
            if parent is not None:
                self._add_edge(parent, code)
            self._walk(raw.get("concept", []), code)

    def _link_properties(self) -> None:
        for concept in list(self.concepts.values()):
            for p in concept.properties:
                value = p.get("valueCode")
                if value is None or value not in self.concepts:
                    continue
                if p.get("code") in _PARENT_PROPERTIES:
                    self._add_edge(value, concept.code)
                elif p.get("code") == "child":
                    self._add_edge(concept.code, value)

    def _add_edge(self, parent: str, child: str) -> None:
        concept = self.concepts[child]
        if parent not in concept.parents:
            concept.parents.append(parent)
            self.children.setdefault(parent, []).append(child)

    # -- queries ------------------------------------------------------------------------------------

    def get(self, code: str) -> Concept | None:
        concept = self.concepts.get(code)
        if concept is None and not self.case_sensitive:
            real = self._folded.get(code.casefold())
            concept = self.concepts.get(real) if real else None
        return concept

    def __iter__(self) -> Iterator[Concept]:
        return iter(self.concepts.values())

    def __len__(self) -> int:
        return len(self.concepts)

    def ancestors(self, code: str) -> frozenset[str]:
        """Every concept that subsumes ``code`` (not including itself)."""
        cached = self._ancestor_cache.get(code)
        if cached is not None:
            return cached
        seen: set[str] = set()
        stack = list(self.concepts[code].parents) if code in self.concepts else []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.concepts[current].parents)
        result = frozenset(seen)
        self._ancestor_cache[code] = result
        return result

    def descendants(self, code: str) -> list[str]:
        """Every concept ``code`` subsumes (not including itself), in hierarchy order."""
        out: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(self.children.get(code, [])))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            out.append(current)
            stack.extend(reversed(self.children.get(current, [])))
        return out

    def display(self, concept: Concept, language: str | None) -> str | None:
        """The display in ``language`` (the CodeSystem's own display, or a designation), else the default."""
        if not language or _language_matches(language, self.language):
            return concept.display
        for designation in concept.designations:
            if _language_matches(language, designation.get("language")):
                return designation.get("value")
        return concept.display

    def all_designations(self, concept: Concept) -> list[dict[str, Any]]:
        """The concept's designations, led by its display tagged with the CodeSystem's language."""
        out: list[dict[str, Any]] = []
        if concept.display:
            out.append({"language": self.language, "value": concept.display})
        out.extend(concept.designations)
        return out

    def display_is_valid(self, concept: Concept, display: str) -> bool:
        wanted = normalise(display).strip()
        return any(normalise(d.get("value", "")).strip() == wanted for d in self.all_designations(concept))

    def property_values(self, concept: Concept, name: str) -> list[Any]:
        """Values of property ``name`` on ``concept``, including the implicit ``parent``/``child``."""
        if name == "parent":
            return list(concept.parents)
        if name == "child":
            return list(self.children.get(concept.code, []))
        values = []
        for p in concept.properties:
            if p.get("code") != name:
                continue
            for key, value in p.items():
                if key.startswith("value"):
                    values.append(value)
        return values
