"""Whether a ``_since`` export reports a child's Patient as deleted, when the child is linked across agencies.

The Bulk Data spec lists in ``deleted`` the resources that the export would have returned but that were
deleted since ``_since``. What "the resource" is differs by export:

- a plain export holds each agency's record of a child as a resource of its own: an agency deleting its
  record is reported as it is (``Patient/<the record's id>``), whatever other agencies keep;
- a de-identified export holds one pseudonymous Patient per child, whichever agencies keep a record of it
  (``docs/deidentification.md``). One agency deleting its record does not delete that Patient while the
  child has another record the caller may see (a full export now would still hold the child): nothing is
  reported. Once no such record remains, ``Patient/<the child's pseudonym>`` is reported deleted, once.

Which child a deleted record belonged to comes from the identity layer's golden records: the record is
no longer linked once deleted, so the golden record's own history says it (the version that removed it).
Whether the caller saw a deleted record is decided on its last version and, for a record the caller saw
through a Consent, on the Consents recorded for it (``seen_before``).
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.export.caller import readable
from fhir_server.identity.book import current
from fhir_server.identity.model import GoldenState, is_golden_body
from fhir_server.search.access import Access
from fhir_server.search.query import parse_search
from fhir_server.security import access as acc
from fhir_server.security.authority import ADMIN, authority_mark, counts
from fhir_server.security.consent import AccessRequest, allowed_classes
from fhir_server.storage.base import HistoryQuery

_PAGE = 500


class Departures:
    """The children of the Patient records deleted since ``since``, as one export's caller sees them."""

    def __init__(
        self,
        store: Any,
        since: str,
        access: Access | None,
        members: set[str] | None,
        request: AccessRequest | None = None,
    ) -> None:
        self._store = store
        self._since = since
        self._access = access
        self._members = members
        self._request = request  # the caller's consent question (None: it sees what it may by role)
        self._former: dict[str, str] | None = None

    async def seen_before(self, record: str, previous: bytes) -> bool:
        """Whether the caller saw the Patient ``record`` before it was deleted (``previous``: its last
        version). A deleted record has left the identity layer's view (no writing agency, no links),
        so the consent view built for live records cannot open it: it is decided here the same way, on
        the Consents recorded for it by the agency that kept it (or by an administrator)."""
        if acc.visible(self._access, "Patient", previous):
            return True
        if self._request is None or self._access is None or not readable(self._access, "Patient"):
            return False
        kept_by = acc.owner_of(orjson.loads(previous))
        query = parse_search(
            "Consent",
            [("patient", f"Patient/{record}")],
            base_url="",
            strict=True,
            default_count=50,
            max_count=50,
        )
        query.total = "none"
        consents = []
        for stored in (await self._store.search(query)).matches:
            consent = orjson.loads(stored.body)
            if acc.owner_of(consent) != kept_by and authority_mark(consent) != ADMIN:
                continue  # an agency's Consent speaks for the records it keeps
            if await counts(self._store, consent):
                consents.append(consent)
        return acc.data_class("Patient") in allowed_classes(consents, self._request)

    async def _former_children(self) -> dict[str, str]:
        """Source record -> the golden record it was removed from since ``since`` (the latest removal):
        read once, from the golden records' versions written since then."""
        if self._former is not None:
            return self._former
        found: dict[str, str] = {}
        before: int | None = None
        while True:
            page = await self._store.history(
                HistoryQuery(resource_type="Patient", since=self._since, count=_PAGE, before_seq=before)
            )
            for entry in page.entries:  # newest first
                if entry.version < 2 or (entry.body and not is_golden_body(entry.body)):
                    continue
                previous = await self._store.vread("Patient", entry.id, entry.version - 1)
                if previous is None or not previous.body or not is_golden_body(previous.body):
                    continue
                was = GoldenState.read(entry.id, orjson.loads(previous.body)).sources()
                now = GoldenState.read(entry.id, orjson.loads(entry.body)).sources() if entry.body else []
                for source in set(was) - set(now):
                    found.setdefault(source, entry.id)
            if page.next_before_seq is None:
                break
            before = page.next_before_seq
        self._former = found
        return found

    async def child_gone(self, record: str) -> str | None:
        """The child (its golden record's id, or ``record`` itself when it was linked to no other) whose
        pseudonymous Patient is gone with the deletion of ``record``; None while the child has another
        record the caller may see (in the cohort, when there is one)."""
        book = await current(self._store)
        golden = book.child(record)
        if golden is None:
            former = (await self._former_children()).get(record)
            if former is None:
                return record
            golden = (
                book.child(former) or former
            )  # merged since into another, or deleted with its last record
        for other in sorted(book.linked(golden) - {golden, record}):
            if self._members is not None and other not in self._members:
                continue
            stored = await self._store.read("Patient", other)
            if stored is None or stored.deleted or not stored.body or is_golden_body(stored.body):
                continue
            if acc.visible(self._access, "Patient", stored.body):
                return None
        return golden
