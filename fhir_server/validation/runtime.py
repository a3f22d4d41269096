"""Conformance resources created over REST (StructureDefinitions, ValueSets, CodeSystems), used by the
validator at once and in every server process.

A StructureDefinition written to the server is checked when it is written (``check_structure_definition``:
its snapshot must generate from its base with the same generator as our shipped profiles, else 422
naming the differential element) and from then on validates ``$validate`` with ``profile`` and any
resource naming it in ``meta.profile``. ValueSets and CodeSystems written to the server serve the
bindings that name them.

Several server processes may share one store, so each process keeps a ``ConformanceBook`` in step
with the store, like the consent book: every validating request first asks the store, per type, how
many history entries it holds and which is newest (one indexed look-up each). Only when that changed
are the resources of the type read again and the validator's runtime tables rebuilt. An update or a
deletion therefore counts from the next request in every process. Core R4 and shipped definitions
keep precedence: a resource written with one of their URLs does not replace them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import HistoryQuery
from fhir_server.validation import bindings, model, profiles
from fhir_server.validation.snapshot import SnapshotError, generate_snapshot

log = logging.getLogger(__name__)

TYPES = ("StructureDefinition", "ValueSet", "CodeSystem")
Mark = tuple[str, str | None, str | None, int | None]  # store, newest lastUpdated, id, version


def _builtin(url: str) -> bool:
    return definitions.structure_definition(url) is not None or profiles.profile(url) is not None


def _shipped_bases() -> dict[str, dict[str, Any]]:
    return {sd["url"]: sd for sd in profiles.structure_definitions()}


def with_snapshot(sd: dict[str, Any], bases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``sd`` with a snapshot generated from its differential (or its own snapshot when it has no
    differential). Raises ``SnapshotError`` (with the differential index) when it cannot be built."""
    base = sd.get("baseDefinition")
    differential = (sd.get("differential") or {}).get("element")
    if not differential:
        if (sd.get("snapshot") or {}).get("element"):
            return sd
        raise SnapshotError("A StructureDefinition needs a differential or a snapshot")
    if not isinstance(base, str):
        raise SnapshotError("A constraining StructureDefinition needs a baseDefinition")
    if base not in bases and definitions.structure_definition(base) is None:
        raise SnapshotError(
            f"Unknown baseDefinition {base}: not an R4 definition nor a profile on this server"
        )
    return generate_snapshot(sd, bases)


def _base_type(base: str, bases: dict[str, dict[str, Any]]) -> str | None:
    found = bases.get(base) or definitions.structure_definition(base)
    return found.get("type") if found else None


def check_structure_definition(sd: dict[str, Any]) -> None:
    """422 when a StructureDefinition written over REST cannot be used: its snapshot does not generate
    (unknown base, an element the base lacks, a slice of an element that does not repeat or declares no
    slicing), or it constrains another type than its base's."""
    if sd.get("derivation") == "specialization" or sd.get("kind") == "logical":
        return  # new types and logical models are stored, not used to validate resources
    url = sd.get("url")
    if not isinstance(url, str) or not url:
        raise FhirError(
            422, "A StructureDefinition needs a url", code="required", expression=["StructureDefinition.url"]
        )
    bases = {**_shipped_bases(), **BOOK.snapshots}
    bases.pop(url, None)
    try:
        built = with_snapshot(sd, bases)
    except SnapshotError as exc:
        where = (
            f"StructureDefinition.differential.element[{exc.index}]"
            if exc.index is not None
            else "StructureDefinition.baseDefinition"
        )
        raise FhirError(
            422,
            f"The snapshot of {url} cannot be generated: {exc}",
            code="processing",
            expression=[where],
        ) from None
    base_type = _base_type(sd.get("baseDefinition", ""), bases)
    if base_type is not None and sd.get("type") != base_type:
        raise FhirError(
            422,
            f"StructureDefinition.type {sd.get('type')!r} differs from its base's type {base_type!r}",
            expression=["StructureDefinition.type"],
        )
    try:
        model.compile_sd(built)
    except (KeyError, ValueError, TypeError) as exc:
        raise FhirError(
            422, f"The StructureDefinition {url} cannot be compiled: {exc}", code="processing"
        ) from None


class ConformanceBook:
    """This process's view of the conformance resources stored on the server."""

    def __init__(self) -> None:
        self._marks: dict[str, Mark] = {}
        self._resources: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
        self.snapshots: dict[str, dict[str, Any]] = {}  # url -> StructureDefinition with snapshot
        self._lock = asyncio.Lock()

    async def _mark(self, store: Any, resource_type: str) -> Mark:
        # Every change adds a history entry with an (id, version) new for its type: the newest entry
        # alone tells whether anything changed (no count of the whole history on every write).
        page = await store.history(HistoryQuery(resource_type=resource_type, count=1, before_seq=2**62))
        newest = page.entries[0] if page.entries else None
        where = f"{getattr(store, 'url', '')}#{id(store)}"
        last = newest.last_updated if newest else None
        return (where, last, newest.id if newest else None, newest.version if newest else None)

    async def refresh(self, store: Any) -> None:
        """Bring the validator's runtime tables in step with ``store`` (cheap when nothing changed)."""
        marks = dict(zip(TYPES, await asyncio.gather(*(self._mark(store, t) for t in TYPES)), strict=True))
        if marks == self._marks:
            return
        async with self._lock:
            changed = [t for t in TYPES if marks[t] != self._marks.get(t)]
            if not changed:
                return
            for t in changed:
                self._resources[t] = [orjson.loads(s.body) async for s in store.iterate(t)]
            self._rebuild(changed)
            self._marks = marks

    def _rebuild(self, changed: list[str]) -> None:
        if "StructureDefinition" in changed:
            self._rebuild_profiles()
        if "ValueSet" in changed or "CodeSystem" in changed:
            value_sets = _by_url(self._resources["ValueSet"], lambda url: definitions.value_set(url) is None)
            code_systems = _by_url(
                self._resources["CodeSystem"], lambda url: definitions.code_system(url) is None
            )
            bindings.set_runtime(value_sets, code_systems)

    def _rebuild_profiles(self) -> None:
        candidates = _by_url(
            [
                sd
                for sd in self._resources["StructureDefinition"]
                if sd.get("derivation") != "specialization" and sd.get("kind") != "logical"
            ],
            lambda url: not _builtin(url),
        )
        bases = _shipped_bases()
        built: dict[str, dict[str, Any]] = {}
        pending = dict(candidates)
        while pending:  # bases first: a profile on a runtime profile waits for it
            progress = False
            for url, sd in list(pending.items()):
                base = sd.get("baseDefinition")
                if base in pending and base != url:
                    continue
                del pending[url]
                progress = True
                try:
                    built[url] = with_snapshot(sd, {**bases, **built})
                except (SnapshotError, KeyError, TypeError) as exc:
                    log.warning("StructureDefinition %s is not usable: %s", url, exc)
            if not progress:  # a cycle of bases: none of them can be built
                for url in pending:
                    log.warning("StructureDefinition %s is not usable: its bases form a cycle", url)
                break
        compiled = {}
        for url, sd in built.items():
            try:
                compiled[url] = model.compile_sd(sd)
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("StructureDefinition %s is not usable: %s", url, exc)
        self.snapshots = built
        model.set_runtime(compiled)


def _by_url(resources: list[dict[str, Any]], allowed: Any) -> dict[str, dict[str, Any]]:
    """url -> resource; when several share a url, an active one before others, then the newest."""
    out: dict[str, dict[str, Any]] = {}
    for r in resources:
        url = r.get("url")
        if not isinstance(url, str) or not url or r.get("status") == "retired" or not allowed(url):
            continue
        current = out.get(url)
        if current is None or _rank(r) >= _rank(current):
            out[url] = r
    return out


def _rank(r: dict[str, Any]) -> tuple[bool, str]:
    meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
    return (r.get("status") == "active", str(meta.get("lastUpdated") or ""))


BOOK = ConformanceBook()


async def refresh(store: Any) -> None:
    """Refresh this process's runtime conformance tables from ``store`` (unguarded)."""
    if store is None:  # no store (a unit test calling an operation directly): nothing created over REST
        return
    opener = getattr(store, "definitions_reader", None)
    await BOOK.refresh(opener() if callable(opener) else store)
