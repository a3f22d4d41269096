"""Who is linked to whom, in memory, for the read paths (access decisions, ``$everything``, ``:mdm``).

The golden records in the store are the truth; this book is a per-process view of them, kept in step
the way the consent book is: each use looks up the newest Patient history entry (one indexed query)
and, when it moved, reads only the Patient versions written since (with a few seconds of overlap, so a
transaction that committed late is not missed; applying a version twice changes nothing). A source's
writing agency comes along, so "which children does this agency serve" needs no query.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from fhir_server.identity import serving
from fhir_server.identity.model import GoldenState, is_golden
from fhir_server.storage.base import HistoryQuery, StoredResource
from fhir_server.storage.newest import UNKNOWN, Newest, Unknown, newest_version

_OVERLAP = timedelta(seconds=5)
_CHANGES_PAGE = 2000  # more changes than this since the last look: read every Patient again


def _earlier(instant: str) -> str:
    moment = datetime.strptime(instant[:23], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC) - _OVERLAP
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class IdentityBook:
    """Links of one store, refreshed on use (one instance per store per process: ``book_for``)."""

    def __init__(self) -> None:
        self._generation: tuple[str, int, str] | bool | None = False
        self._since: str | None = None
        self._lock = asyncio.Lock()
        self.golden_of: dict[str, str] = {}  # source id -> golden id
        self.sources: dict[str, frozenset[str]] = {}  # golden id -> source ids
        self.replaced_by: dict[str, str] = {}  # retired golden -> the golden it was merged into
        self.owner: dict[str, str] = {}  # source id -> Organization/ID that wrote it
        self.states: dict[str, GoldenState] = {}  # golden id -> its links, in the order they were made
        self._kept: dict[str, set[str]] = {}  # Organization/ID -> the source ids it wrote
        self.version = 0  # bumped whenever links or owners change (cache key for access decisions)
        self._served: dict[str, frozenset[str]] = {}
        self._touched: dict[str, set[str]] = {}  # Organization/ID -> ids whose "served" may have moved
        self._recent: dict[str, tuple[int, str]] = {}  # id -> (version, lastUpdated) applied lately

    # --- questions --------------------------------------------------------------------------------

    def child(self, patient_id: str) -> str | None:
        """The golden record of the child ``patient_id`` belongs to (itself for a golden record)."""
        seen = 0
        current = self.golden_of.get(patient_id, patient_id)
        while current in self.replaced_by and seen < 16:
            current, seen = self.replaced_by[current], seen + 1
        return current if current in self.sources else None

    def linked(self, patient_id: str) -> frozenset[str]:
        """Every Patient id of the child: its golden record and all linked source records."""
        golden = self.child(patient_id)
        if golden is None:
            return frozenset({patient_id})
        return self.sources[golden] | {golden}

    def spoken_for(self, organization: str, patient_id: str) -> frozenset[str]:
        """The records of ``patient_id``'s child that ``organization`` speaks for
        (``fhir_server.identity.serving``: only a data steward's link carries authority)."""
        golden = self.child(patient_id)
        if golden is None:
            return frozenset({patient_id}) if self.owner.get(patient_id) == organization else frozenset()
        return serving.spoken_for(self.states[golden], self.owner, organization)

    def served(self, organization: str) -> frozenset[str]:
        """Golden records of the children ``organization`` serves as a whole (it speaks for every
        record of the child: ``spoken_for``), whose merged identity it may therefore read."""
        found = self._served.get(organization)
        if found is None:
            kept = self._kept.get(organization, ())
            goldens = {g for s in kept if (g := self.golden_of.get(s))}
            found = frozenset(g for g in goldens if self._serves(organization, g))
            if len(self._served) > 4096:
                self._served.clear()
            self._served[organization] = found
        return found

    def _serves(self, organization: str, golden: str) -> bool:
        """One golden record's membership in ``served(organization)``, by the same rule."""
        kept = self._kept.get(organization, set())
        if not any(s in kept and self.golden_of.get(s) == golden for s in self.sources.get(golden, ())):
            return False
        return golden in self.spoken_for(organization, golden)

    def expand(self, patients: frozenset[str]) -> frozenset[str]:
        """``patients`` with every record linked to each of them."""
        out = set(patients)
        for patient in patients:
            out |= self.linked(patient)
        return frozenset(out)

    # --- keeping in step --------------------------------------------------------------------------

    def _changed(self) -> None:
        """Bump the version and bring each cached ``served`` answer up to date for the children whose
        links or record owners moved (recomputing an agency's whole answer costs a pass over every
        record it keeps; this costs the size of the children touched)."""
        self.version += 1
        for organization, ids in self._touched.items():
            found = self._served.get(organization)
            if found is None:
                continue
            updated = set(found)
            for item in ids:
                golden = self.golden_of.get(item, item)
                for candidate in {item, golden}:
                    if self._serves(organization, candidate):
                        updated.add(candidate)
                    else:
                        updated.discard(candidate)
            self._served[organization] = frozenset(updated)
        self._touched = {}

    def _touch(self, ids: frozenset[str] | set[str]) -> None:
        """Note that the agencies keeping any of ``ids`` may serve a child more or less now."""
        for source in ids:
            owner = self.owner.get(source)
            if owner is not None:
                self._touched.setdefault(owner, set()).update(ids)

    def _apply(self, stored: StoredResource, previous_was_golden: bool) -> None:
        pid = stored.id
        if stored.deleted or not stored.body:
            if pid in self.sources or previous_was_golden:
                self._touch(self.sources.get(pid, frozenset()) | {pid})
                self.states.pop(pid, None)
                for source in self.sources.pop(pid, frozenset()):
                    if self.golden_of.get(source) == pid:
                        del self.golden_of[source]
                self.replaced_by.pop(pid, None)
            self._set_owner(pid, None)
            return
        resource = orjson.loads(stored.body)
        if not is_golden(resource):
            from fhir_server.security.access import owner_of

            self._set_owner(pid, owner_of(resource))
            return
        state = GoldenState.read(pid, resource)
        before = self.sources.get(pid, frozenset())
        now = frozenset(state.sources())
        self._touch(before | now | {pid})
        for source in before - now:
            if self.golden_of.get(source) == pid:
                del self.golden_of[source]
        for source in now:
            self.golden_of[source] = pid
        self.sources[pid] = now
        self.states[pid] = state
        if state.replaced_by:
            self.replaced_by[pid] = state.replaced_by
        else:
            self.replaced_by.pop(pid, None)

    def _set_owner(self, source: str, owner: str | None) -> None:
        before = self.owner.pop(source, None)
        if before == owner:
            if owner is not None:
                self.owner[source] = owner
            return
        moved = {source, self.golden_of.get(source, source)}
        if before is not None:
            self._kept.get(before, set()).discard(source)
            self._touched.setdefault(before, set()).update(moved)
        if owner is not None:
            self.owner[source] = owner
            self._kept.setdefault(owner, set()).add(source)
            self._touched.setdefault(owner, set()).update(moved)

    async def _reload(self, store: Any) -> None:
        self.golden_of, self.sources, self.replaced_by, self.owner, self._kept = {}, {}, {}, {}, {}
        self.states, self._served, self._touched, self._recent = {}, {}, {}, {}
        async for stored in store.iterate("Patient"):
            self._apply(stored, False)
            self._recent[stored.id] = (stored.version, stored.last_updated)  # pruned on the next look

    async def _apply_changes(self, store: Any) -> bool:
        if self._since is None:
            return False
        window = _earlier(self._since)
        page = await store.history(
            HistoryQuery(resource_type="Patient", since=window, count=_CHANGES_PAGE, before_seq=2**62)
        )
        if page.next_before_seq is not None:
            return False
        # The overlap re-reads versions already applied on earlier looks: skip those (a version is
        # applied once, and never after a newer one of the same record), forget what left the window.
        recent = {pid: seen for pid, seen in self._recent.items() if seen[1] >= window}
        for stored in reversed(page.entries):  # oldest first: the last version of each record wins
            seen = recent.get(stored.id)
            if seen is not None and seen[0] >= stored.version:
                continue
            recent[stored.id] = (stored.version, stored.last_updated)
            self._apply(stored, stored.id in self.sources)
        self._recent = recent
        return True

    async def refresh(self, store: Any, newest: Newest | Unknown = UNKNOWN) -> None:
        """Bring the book up to date with ``store`` (the server's own, unrestricted store).

        ``newest``: the newest Patient version (id, version, lastUpdated), when the caller read it
        already (``security.changes``: one look-up for all of a request's checks)."""
        generation = await newest_version(store, "Patient") if isinstance(newest, Unknown) else newest
        if generation == self._generation:
            return
        async with self._lock:
            if generation == self._generation:
                return
            if self._generation is False or not await self._apply_changes(store):
                await self._reload(store)
            self._generation = generation
            self._since = generation[2] if generation else None
            self._changed()


_books: dict[int, tuple[Any, IdentityBook]] = {}


def book_for(store: Any) -> IdentityBook:
    """The book of ``store`` (the backend itself, not a request's secured view of it)."""
    inner = getattr(store, "_inner", store)
    key = id(inner)
    entry = _books.get(key)
    if entry is None or entry[0] is not inner:
        if len(_books) > 64:
            _books.clear()
        entry = _books[key] = (inner, IdentityBook())
    return entry[1]


async def current(store: Any, newest: Newest | Unknown = UNKNOWN) -> IdentityBook:
    """The up-to-date book of ``store`` (``newest``: as for ``IdentityBook.refresh``)."""
    inner = getattr(store, "_inner", store)
    book = book_for(inner)
    await book.refresh(inner, newest)
    return book
