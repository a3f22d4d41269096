"""A store wrapper that enforces scopes, consent and data ownership on everything a request touches.

Interactions, bundles and operations all reach data through ``ctx.store``; the security hook replaces
it for the request with a ``SecuredStore``, so one place decides for every path: reads and vreads of
resources the caller may not see answer like unknown ones (404, or 403 when configured), searches carry
the caller's ``Access`` into the query, and writes must be the caller's own agency's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access
from fhir_server.security import access as acc
from fhir_server.security import authority, referrals, roles
from fhir_server.security.clients import check_organization
from fhir_server.security.scopes import ScopeSet
from fhir_server.security.tokens import Principal
from fhir_server.storage.base import HistoryPage, HistoryQuery, StoredResource, StoreTransaction


class Guard:
    """The decisions for one request, and what it touched (for the AuditEvent)."""

    def __init__(self, principal: Principal, access: Access | None, forbidden_status: int) -> None:
        self.principal = principal
        self.access = access
        self.forbidden_status = forbidden_status
        self.touched: list[tuple[str, str, bytes]] = []  # type, id, body (for the audit's patients)
        # Refusals the answer does not show (a hidden resource answered as an unknown one): audited.
        self.denials: list[str] = []
        self.children_seen: dict[str, bool] = {}  # child id -> the caller may see it (for writes)
        # The request body was stamped with the caller's agency before the write path saw it.
        self.prestamped = False
        # What the request changed in a workflow (a referral's status), for the AuditEvent's description.
        self.notes: list[str] = []
        # Called inside a write transaction, after its last write and before its commit, with the
        # unguarded transaction and the first version written: the request's AuditEvent goes there,
        # so a write and its audit commit together (set by ``security.service``).
        self.on_write_commit: Callable[[StoreTransaction, StoredResource], Awaitable[None]] | None = None
        self.audit_committed = False
        self.audited: tuple[int, int] = (-1, -1)  # touched and denials named by that event

    def require(self, resource_type: str, letter: str, what: str) -> None:
        if not self.principal.may(resource_type, letter):
            raise FhirError(
                403,
                f"This client may not {what} {resource_type} (its token lacks"
                f" system/{resource_type}.{letter}, or role '{self.principal.role.name}' forbids it)",
                code="forbidden",
            )

    def hidden(self, resource_type: str, id_: str) -> FhirError:
        if self.forbidden_status == 403:
            return FhirError(403, f"Access to {resource_type}/{id_} is not permitted", code="forbidden")
        return FhirError(404, f"{resource_type}/{id_} is not known", code="not-found")

    def forbid(self, message: str) -> FhirError:
        return FhirError(403, message, code="forbidden")

    def unrestricted(self) -> bool:
        return self.access is None

    def record(self, stored: StoredResource) -> None:
        if len(self.touched) < 1000:
            self.touched.append((stored.resource_type, stored.id, stored.body))

    def record_child(self, child: str) -> None:
        """Name a child in the audit without anything of its data (a refused write about it)."""
        if len(self.touched) < 1000:
            self.touched.append(("Patient", child, b""))

    def deny(self, reason: str) -> None:
        if len(self.denials) < 20:
            self.denials.append(reason)

    def note(self, text: str) -> None:
        if len(self.notes) < 50:
            self.notes.append(text)


# Backends whose search compiles ``SearchQuery.access`` into the query itself. Any other backend would
# silently ignore the restriction, so a restricted search there is refused rather than run unfiltered.
_ACCESS_BACKENDS = ("fhir_server.storage.sqlite", "fhir_server.storage.mongo")


def _enforceable(guard: Guard, backend: Any) -> None:
    from fhir_server.observability.timed_store import backend_of

    backend = backend_of(backend)  # look through the metrics' timing layer
    if guard.access is not None and not type(backend).__module__.startswith(_ACCESS_BACKENDS):
        raise FhirError(
            501,
            f"Consent-restricted search is not available on the {type(backend).__name__} backend yet",
            code="not-supported",
        )


def _search_types(guard: Guard, query: Any) -> None:
    """Narrow a system search to the searchable types; a type search needs ``s`` on its type."""
    if getattr(query, "system_level", False):
        allowed = tuple(t for t in query.resource_types if guard.principal.may(t, "s"))
        if not allowed:
            raise guard.forbid("This client may not search any of the requested resource types")
        query.resource_types = allowed
    else:
        for rtype in query.resource_types:
            guard.require(rtype, "s", "search")
    query.access = guard.access


class SecuredStore:
    """``Store`` for one authenticated request (see module docstring)."""

    def __init__(self, inner: Any, guard: Guard) -> None:
        self._inner = inner
        self.guard = guard
        self.url = inner.url

    def __getattr__(self, name: str) -> Any:  # kv area and anything else non-FHIR
        return getattr(self._inner, name)

    def definitions_reader(self) -> Any:
        """The unguarded store for the server's own look-ups of definitional resources (the Questionnaire
        a response is validated against): open to every caller, so the caller's scopes do not apply."""
        return self._inner

    async def _visible(self, stored: StoredResource) -> bool:
        body = stored.body
        if stored.deleted:
            previous = await self._inner.vread(stored.resource_type, stored.id, stored.version - 1)
            body = previous.body if previous is not None else b""
            if not body:
                return self.guard.unrestricted()
        return acc.visible(self.guard.access, stored.resource_type, body)

    async def _checked(self, stored: StoredResource | None) -> StoredResource | None:
        if stored is None:
            return None
        if not await self._visible(stored):
            error = self.guard.hidden(stored.resource_type, stored.id)
            if error.status == 404:
                self.guard.deny(f"{stored.resource_type}/{stored.id} exists but is hidden from this client")
                return None
            raise error
        self.guard.record(stored)
        return stored

    async def read(self, resource_type: str, id_: str) -> StoredResource | None:
        self.guard.require(resource_type, "r", "read")
        return await self._checked(await self._inner.read(resource_type, id_))

    async def vread(self, resource_type: str, id_: str, version: int) -> StoredResource | None:
        self.guard.require(resource_type, "r", "read")
        current = await self._inner.read(resource_type, id_)
        if current is None or await self._checked(current) is None:
            return None
        return await self._checked(await self._inner.vread(resource_type, id_, version))

    async def history(self, query: HistoryQuery) -> HistoryPage:
        if query.id is None:
            if not self.guard.unrestricted():
                raise self.guard.forbid(
                    "Type and system history are only open to clients that may see every resource;"
                    " search with _lastUpdated instead (it honours consent)"
                )
            if query.resource_type is not None:
                self.guard.require(query.resource_type, "s", "read the history of")
            return await self._inner.history(query)
        assert query.resource_type is not None
        self.guard.require(query.resource_type, "r", "read the history of")
        page = await self._inner.history(query)
        access = self.guard.access
        kept = [e for e in page.entries if e.deleted or acc.visible(access, e.resource_type, e.body)]
        for entry in kept:
            self.guard.record(entry)
        total = page.total if len(kept) == len(page.entries) else None
        return dataclasses.replace(page, entries=kept, total=total)

    async def search(self, query: Any) -> Any:
        _search_types(self.guard, query)
        _enforceable(self.guard, self._inner)
        page = await self._inner.search(query)
        for stored in (*page.matches, *page.included):
            self.guard.record(stored)
        return page

    async def scan(
        self, query: Any, after: int = 0, *, limit: int = 1000, max_bytes: int = 8 << 20
    ) -> Any:
        _search_types(self.guard, query)
        _enforceable(self.guard, self._inner)
        page = await self._inner.scan(query, after, limit=limit, max_bytes=max_bytes)
        for stored in page.resources:
            self.guard.record(stored)
        return page

    def _whole_store(self, what: str) -> None:
        if not self.guard.unrestricted():
            raise self.guard.forbid(f"{what} needs a client that may see every resource (role admin)")

    def iterate(self, resource_type: str | None = None) -> AsyncIterator[StoredResource]:
        self._whole_store("Reading the whole store")
        return self._inner.iterate(resource_type)

    def iterate_bodies(self, resource_type: str) -> AsyncIterator[list[bytes]]:
        self._whole_store("Reading the whole store")
        return self._inner.iterate_bodies(resource_type)  # type: ignore[no-any-return]

    def iterate_history(self) -> AsyncIterator[StoredResource]:
        self._whole_store("Reading the whole history")
        return self._inner.iterate_history()

    async def changes(self, after: int, limit: int = 500) -> list[tuple[int, StoredResource]]:
        self._whole_store("Reading the change feed")
        return list(await self._inner.changes(after, limit))

    async def last_change(self) -> int:
        self._whole_store("Reading the change feed")
        return int(await self._inner.last_change())

    async def reindex(self, resource: StoredResource, index: Any) -> None:
        self._whole_store("Reindexing")
        await self._inner.reindex(resource, index)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SecuredTransaction]:
        carried = False
        async with self._inner.transaction() as tx:
            secured = _SecuredTransaction(tx, self)
            yield secured
            hook = self.guard.on_write_commit
            if hook is not None and secured.first_write is not None:
                self.guard.on_write_commit = None  # one transaction carries the request's event
                await hook(tx, secured.first_write)
                carried = True
        if carried:  # committed: the request's AuditEvent is durable with its write
            self.guard.audit_committed = True


class _SecuredTransaction:
    def __init__(self, tx: StoreTransaction, store: SecuredStore) -> None:
        self._tx = tx
        self._store = store
        self._guard = store.guard
        self.first_write: StoredResource | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def _visible(self, stored: StoredResource) -> bool:
        """Visibility inside the transaction (a deletion is judged by the version it deleted)."""
        if self._guard.unrestricted():
            return True
        body = stored.body
        if stored.deleted:
            previous = await self._store._inner.vread(stored.resource_type, stored.id, stored.version - 1)
            body = previous.body if previous is not None and not previous.deleted else b""
            if not body:
                return False
        return acc.visible(self._guard.access, stored.resource_type, body)

    def definitions_reader(self) -> Any:
        """As ``SecuredStore.definitions_reader``, inside this transaction (a bundle sees its own writes)."""
        return self._tx

    @property
    def unguarded(self) -> StoreTransaction:
        """The transaction without this caller's restrictions, for the server's own bookkeeping that
        must commit with the caller's change (golden records of ``fhir_server.identity``)."""
        return self._tx

    def record_server_write(self, stored: StoredResource) -> None:
        """A version the server wrote on the caller's behalf: named in the request's AuditEvent."""
        self._guard.record(stored)

    async def read(self, resource_type: str, id_: str) -> StoredResource | None:
        """A resource the caller may not see reads as one that does not exist (or 403 when configured),
        so every interaction built on it answers for a hidden resource exactly as for an unknown one."""
        stored = await self._tx.read(resource_type, id_)
        if stored is None or await self._visible(stored):
            return stored
        error = self._guard.hidden(resource_type, id_)
        if error.status != 404:
            raise error
        self._guard.deny(f"{resource_type}/{id_} exists but is hidden from this client")
        return None

    def will_create(self, resource_type: str, id_: str) -> None:
        """A Patient this transaction creates under a new id is the writer's own: entries that run before
        its write (a transaction runs POSTs before PUTs) may refer to it. If its write fails, so does the
        whole transaction."""
        if resource_type == "Patient":
            self._guard.children_seen.setdefault(id_, True)

    async def resolve_reference(self, resource_type: str, id_: str) -> StoredResource | None:
        """A referenced resource for a validation rule: the caller's view, with nothing recorded."""
        stored = await self._tx.read(resource_type, id_)
        return stored if stored is None or await self._visible(stored) else None

    async def search(self, query: Any) -> Any:
        _search_types(self._guard, query)
        _enforceable(self._guard, self._tx)
        return await self._tx.search(query)

    def _no_client_id(self, resource_type: str, id_: str) -> FhirError:
        """The one answer for update-as-create by an agency client, whether or not the id is taken by
        a resource it cannot see (so the answer reveals nothing)."""
        return FhirError(
            405,
            f"{resource_type}/{id_} cannot be created with an id chosen by the client: agency clients"
            " create with POST (the server assigns the id) or with a conditional update on an identifier",
            code="not-supported",
            headers={"Allow": "GET, PUT, PATCH, DELETE"},
        )

    async def _check_owner(
        self,
        rtype: str,
        id_: str,
        current: StoredResource | None,
        resource: dict[str, Any] | None,
        method: str,
    ) -> str:
        """The owner tag the new version must carry; raises when the caller may not write it."""
        guard, principal = self._guard, self._guard.principal
        org, unrestricted = principal.organization, guard.unrestricted()
        if current is None:
            if method == "PUT" and not unrestricted:
                raise self._no_client_id(rtype, id_)
            return org
        if current.deleted:
            previous = await self._store._inner.vread(rtype, current.id, current.version - 1)
            body = previous.body if previous is not None and not previous.deleted else b""
            before = orjson.loads(body) if body else {}
            if unrestricted or acc.owner_of(before) == org:
                return org
            if body and acc.visible(guard.access, rtype, body):
                raise self._other_agency(current)
            raise self._no_client_id(rtype, current.id)
        existing = orjson.loads(current.body)
        owner = acc.owner_of(existing)
        if owner == org or (owner is None and unrestricted):
            return owner or org
        if not acc.visible(guard.access, rtype, current.body):
            if method == "DELETE":
                raise guard.hidden(rtype, current.id)
            raise self._no_client_id(rtype, current.id)
        if unrestricted and rtype == "Consent" and owner is not None:
            return owner  # an admin may change or withdraw any agency's consent; it stays that agency's
        if resource is not None and referrals.assigned_agency(rtype, existing) == org:
            refusal = referrals.assignee_refusal(rtype, existing, resource, org)
            if refusal is None:
                return owner or org
            raise guard.forbid(f"{rtype}/{current.id}: {refusal}")
        raise self._other_agency(current)

    def _check_referral(
        self, id_: str, current: StoredResource | None, body: dict[str, Any], owner: str
    ) -> None:
        """Who may move a referral Task: each status change belongs to the party
        ``referrals.TRANSITIONS`` names."""
        organization = self._guard.principal.organization
        if current is None or current.deleted:
            return  # where a new one starts is checked on the write path (workflow/referrals.py)
        existing = orjson.loads(current.body)
        refusal = referrals.transition_role_refusal(
            existing, body, organization, is_requester=owner == organization
        )
        if refusal is not None:
            raise self._guard.forbid(f"Task/{id_}: {refusal}")

    @property
    def principal(self) -> Principal:
        """The caller whose request this transaction serves (for server-made follow-up writes)."""
        return self._guard.principal

    def note(self, text: str) -> None:
        """Say in the request's AuditEvent what a write changed in a workflow."""
        self._guard.note(text)

    def as_server(self) -> StoreTransaction:
        """The transaction without this caller's restrictions, for changes the server itself makes as a
        consequence of an allowed write (a referral's ServiceRequest kept in step with its Task); what
        it writes is still recorded in this request's audit."""
        return _ServerWrites(self._tx, self._guard)  # type: ignore[return-value]

    def _other_agency(self, current: StoredResource) -> FhirError:
        return self._guard.forbid(
            f"{current.resource_type}/{current.id} was written by another agency;"
            " only that agency may change it"
        )

    def _check_configuration(self, resource_type: str) -> None:
        if resource_type in authority.CONFIGURATION_TYPES and not authority.may_configure(
            self._guard.principal.role
        ):
            raise self._guard.forbid(
                f"{resource_type} is server-wide configuration: only admin clients may create, change"
                " or delete it"
            )

    async def _check_children(
        self, resource_type: str, resource: dict[str, Any], current: StoredResource | None, index: Any
    ) -> None:
        """Every child a write newly refers to must be one the writer may see; a hidden child gets the
        answer an unknown one gets (422, same words)."""
        guard = self._guard
        if guard.unrestricted() or resource_type == "Patient":
            return
        keys = acc.patient_links().get(resource_type)
        if not keys:
            return
        rows = index.reference if index is not None else ()
        children = {row[2] for row in rows if row[0] in keys and row[1] == "Patient" and row[2]}
        if not children:
            return
        if current is not None and not current.deleted:
            children -= acc.linked_patients(resource_type, orjson.loads(current.body))
        for child in sorted(children):
            if not await self._child_visible(child):
                guard.record_child(child)
                raise FhirError(
                    422,
                    f"{_where(resource_type, resource, child)} refers to Patient/{child}, which is not known",
                    code="processing",
                    expression=[_where(resource_type, resource, child)],
                )

    async def _child_visible(self, child: str) -> bool:
        known = self._guard.children_seen.get(child)
        if known is None:
            stored = await self._tx.read("Patient", child)
            known = (
                stored is not None
                and not stored.deleted
                and acc.visible(self._guard.access, "Patient", stored.body)
            )
            self._guard.children_seen[child] = known
        return known

    async def _consent_authority(self, resource: dict[str, Any]) -> str | None:
        principal = self._guard.principal
        try:
            return await authority.recording_authority(
                self._tx, principal.organization, principal.role, resource
            )
        except authority.ConsentRefused as refused:
            if refused.status == 422:
                raise FhirError(
                    422, refused.message, code="processing", expression=[refused.expression]
                ) from None
            raise self._guard.forbid(refused.message) from None

    async def authorize_write(
        self, resource_type: str, id_: str, body: dict[str, Any]
    ) -> tuple[str, str | None]:
        """Check the caller may write this version; returns (owner, owner the body already claims).

        Called for every write, including an update that changes nothing (so a no-op cannot be used
        to probe or touch another agency's resource).
        """
        current = await self._tx.read(resource_type, id_)
        return await self._authorize(resource_type, id_, body, current, "PUT")

    async def _authorize(
        self,
        resource_type: str,
        id_: str,
        body: dict[str, Any],
        current: StoredResource | None,
        method: str,
    ) -> tuple[str, str | None]:
        guard = self._guard
        if resource_type == "AuditEvent":
            raise guard.forbid("AuditEvents are written by the server only; clients cannot write them")
        self._check_configuration(resource_type)
        exists = current is not None and not current.deleted
        guard.require(resource_type, "u" if exists else "c", "update" if exists else "create")
        owner = await self._check_owner(resource_type, id_, current, body, method)
        if resource_type == "Task" and not guard.unrestricted():
            self._check_referral(id_, current, body, owner)
        claimed = acc.owner_of(body)
        if (
            claimed is not None
            and claimed != owner
            and guard.prestamped
            and claimed == guard.principal.organization
        ):
            claimed = None  # our own stamp on an update the caller may make to another agency's Task
        if claimed is not None and claimed != owner:
            raise guard.forbid(
                f"The resource claims to be written by {claimed}, but this client writes for"
                f" {guard.principal.organization}: writing on behalf of another agency is refused"
            )
        return owner, claimed

    async def put(self, resource: StoredResource, index: Any) -> StoredResource:
        rtype = resource.resource_type
        body = orjson.loads(resource.body)
        current = await self._tx.read(rtype, resource.id)
        owner, claimed = await self._authorize(rtype, resource.id, body, current, resource.method)
        await self._check_children(rtype, body, current, index)
        data = resource.body
        if claimed is None:
            data = acc.stamp_owner(data, body, owner)
            index.token[:] = [row for row in index.token if row[1] != acc.OWNER_TAG_SYSTEM]
            index.token.append((acc.owner_keys()[rtype], acc.OWNER_TAG_SYSTEM, owner, 0))
        if rtype == "Consent":
            mark = await self._consent_authority(body)
            data = authority.mark(data, orjson.loads(data), mark)
            index.token[:] = [row for row in index.token if row[1] != authority.CONSENT_AUTHORITY_SYSTEM]
            if mark is not None:
                index.token.append((acc.owner_keys()[rtype], authority.CONSENT_AUTHORITY_SYSTEM, mark, 0))
        if data is not resource.body:
            resource = dataclasses.replace(resource, body=data)
        self._guard.record(resource)
        await self._tx.put(resource, index)
        if self.first_write is None:
            self.first_write = resource
        return resource

    async def delete(self, tombstone: StoredResource) -> None:
        guard, rtype = self._guard, tombstone.resource_type
        if rtype == "AuditEvent":
            raise guard.forbid("AuditEvents cannot be deleted")
        self._check_configuration(rtype)
        guard.require(rtype, "d", "delete")
        current = await self._tx.read(rtype, tombstone.id)
        await self._check_owner(rtype, tombstone.id, current, None, "DELETE")
        await self._tx.delete(tombstone)
        if self.first_write is None:
            self.first_write = tombstone


class _ServerWrites:
    """The inner transaction for server-made writes; every version written is named in the audit."""

    def __init__(self, tx: StoreTransaction, guard: Guard) -> None:
        self._tx = tx
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    @property
    def principal(self) -> Principal:
        return self._guard.principal

    def note(self, text: str) -> None:
        self._guard.note(text)

    async def put(self, resource: StoredResource, index: Any) -> StoredResource:
        stored = await self._tx.put(resource, index)
        self._guard.record(stored)
        return stored


def _where(resource_type: str, resource: dict[str, Any], child: str) -> str:
    """The top-level element holding the reference to ``Patient/child`` (for the error's expression)."""
    for name, value in resource.items():
        for item in value if isinstance(value, list) else [value]:
            ref = item.get("reference") if isinstance(item, dict) else None
            if isinstance(ref, str) and (ref == f"Patient/{child}" or ref.endswith(f"/Patient/{child}")):
                return f"{resource_type}.{name}"
    return resource_type


def agency_writer(store: Any, organization: str) -> SecuredStore:
    """``store`` as a trusted in-process writer for ``organization`` sees it (``termtem load --agency``).

    Loads that bypass HTTP still go through the one guard: every version written carries the
    agency's writing tag (and its index row), and the ownership rules of HTTP writes hold (another
    agency's resources are not changed; data claiming another agency is refused). Reads are not
    restricted: the operator holds the store itself. ``ValueError`` when ``organization`` is no
    ``Organization/ID`` reference.
    """
    check_organization(organization)
    operator = Principal(
        client_id="termtem-cli",
        name=f"in-process load for {organization}",
        organization=organization,
        agency_type=None,
        role=roles.get_role("admin"),
        scopes=ScopeSet.parse("system/*.cruds"),
        token_id="",
    )
    return SecuredStore(store, Guard(operator, None, 404))
