"""Recording events: for every version written, which subscriptions it notifies, in the same transaction.

One ``Engine`` per store in each process keeps the active subscriptions (``active`` and ``error``:
a failing endpoint does not stop events from being recorded, they stay retrievable) with their
criteria parsed. It reloads them when the newest Subscription version in the store changed (looked up
on every write, so one activated through another server process matches from the next write on).
For each version written the engine matches the criteria against the version's index rows
(``matching``), checks the subscriber may hear about it (``audience``) and records one outbox event
per subscription with ``StoreTransaction.outbox_put_many``: the event exists if and only if the write commits.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError
from fhir_server.search.extract import extract_index
from fhir_server.security import access as acc
from fhir_server.storage.base import HistoryQuery, StoredResource, StoreTransaction
from fhir_server.subscriptions import matching, model
from fhir_server.subscriptions.audience import SUBSCRIBER_TAG, Audiences, addressed_to

log = logging.getLogger("termtem.subscriptions")

STREAM_PREFIX = "subscription/"
RECORDING = ("active", "error")
_REFRESH = 30.0  # seconds: a safety net; a changed Subscription reloads at once
_MAX_SUBSCRIPTIONS = 10_000


def stream(subscription_id: str) -> str:
    return STREAM_PREFIX + subscription_id


@dataclass(frozen=True)
class Active:
    """One criteria and the subscriptions that share it, by subscriber: a write is matched once per
    criteria and checked once per subscriber, however many subscriptions there are."""

    criteria: model.Subscription  # one of them (for the type and the search)
    conditions: tuple[Any, ...]
    streams: dict[str | None, list[str]]  # subscriber -> the outbox streams of its subscriptions


def server_tag(resource: dict[str, Any], system: str) -> str | None:
    meta = resource.get("meta")
    for tag in meta.get("tag", []) if isinstance(meta, dict) and isinstance(meta.get("tag"), list) else []:
        if isinstance(tag, dict) and tag.get("system") == system and isinstance(tag.get("code"), str):
            return str(tag["code"])
    return None


def read_subscription(stored: StoredResource) -> model.Subscription | None:
    """A stored Subscription as the engine and the dispatcher use it (None: unusable)."""
    if stored.deleted:
        return None
    resource = orjson.loads(stored.body)
    try:
        parsed = model.parse(resource, version=stored.version)
    except FhirError:
        return None
    return dataclasses.replace(
        parsed, owner=acc.owner_of(resource), subscriber=server_tag(resource, SUBSCRIBER_TAG)
    )


class Engine:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.audiences = Audiences()
        self._by_type: dict[str, list[Active]] | None = None
        self._loaded = 0.0
        self._newest: tuple[str, int] | None = None  # the newest Subscription version when loaded

    def invalidate(self) -> None:
        self._by_type = None

    async def active_for(self, tx: StoreTransaction, resource_type: str) -> list[Active]:
        # The newest Subscription version is looked up on every write (one index probe): a
        # subscription another server process activated counts from the first write after it.
        newest = await self._newest_subscription()
        if self._by_type is None or newest != self._newest or time.monotonic() - self._loaded > _REFRESH:
            await self._load(tx)
            self._newest = newest
        assert self._by_type is not None
        return self._by_type.get(resource_type, [])

    async def _newest_subscription(self) -> tuple[str, int] | None:
        page = await self.store.history(HistoryQuery(resource_type="Subscription", count=1, before_seq=2**62))
        return (page.entries[0].id, page.entries[0].version) if page.entries else None

    async def _load(self, tx: StoreTransaction) -> None:
        """Read the subscriptions through the write transaction (unrestricted), so a Subscription this
        transaction just activated counts at once."""
        from fhir_server.search.query import parse_search

        server = tx.as_server() if hasattr(tx, "as_server") else tx
        query = parse_search(
            "Subscription",
            [("status", ",".join(RECORDING)), ("_count", str(_MAX_SUBSCRIPTIONS))],
            base_url="",
            strict=True,
            default_count=_MAX_SUBSCRIPTIONS,
            max_count=_MAX_SUBSCRIPTIONS,
        )
        page = await server.search(query)
        if page.next_cursor is not None:
            log.warning("more than %d active subscriptions: the rest are not matched", _MAX_SUBSCRIPTIONS)
        groups: dict[tuple[str, tuple[tuple[str, str], ...]], Active] = {}
        for stored in page.matches:
            subscription = read_subscription(stored)
            if subscription is None or subscription.status not in RECORDING:
                continue
            key = (subscription.resource_type, subscription.params)
            if key not in groups:
                try:
                    conditions = model.conditions(subscription)
                except FhirError as exc:  # e.g. a parameter waiting for its reindex: skipped, said so
                    log.warning("Subscription/%s: %s", subscription.id, exc.diagnostics)
                    continue
                groups[key] = Active(subscription, conditions, {})
            groups[key].streams.setdefault(subscription.subscriber, []).append(stream(subscription.id))
        by_type: dict[str, list[Active]] = {}
        for (resource_type, _), active in groups.items():
            by_type.setdefault(resource_type, []).append(active)
        self._by_type = by_type
        self._loaded = time.monotonic()

    async def record(
        self, tx: StoreTransaction, stored: StoredResource, current: StoredResource | None, index: Any
    ) -> int:
        """Record the events ``stored`` causes; returns how many."""
        if stored.resource_type == "Subscription":
            self.invalidate()
        subscriptions = await self.active_for(tx, stored.resource_type)
        if not subscriptions:
            return 0
        body = stored.body
        if stored.deleted:
            if current is None or current.deleted:
                return 0
            body = current.body
            index = extract_index(orjson.loads(body))
        target = matching.Target(stored.id, stored.last_updated, index)
        resource: dict[str, Any] | None = None
        streams: list[str] = []
        heard: dict[str | None, bool] = {}  # per subscriber: one decision per write, however many
        for active in subscriptions:
            hit = matching.matches(active.conditions, target)
            if hit is None:
                hit = not stored.deleted and await _search_match(tx, active.criteria, stored.id)
            if not hit:
                continue
            if resource is None:
                resource = orjson.loads(body)
            for subscriber, names in active.streams.items():
                if subscriber not in heard:
                    heard[subscriber] = await self._may_hear(subscriber, stored.resource_type, body, resource)
                if heard[subscriber]:
                    streams.extend(names)
        if streams:
            await tx.outbox_put_many(
                streams,
                {
                    "focus": f"{stored.resource_type}/{stored.id}",
                    "version": stored.version,
                    "method": stored.method,
                    "timestamp": stored.last_updated,
                },
            )
        return len(streams)

    async def _may_hear(
        self, subscriber: str | None, resource_type: str, body: bytes, resource: dict[str, Any]
    ) -> bool:
        audience = await self.audiences.get(self.store, subscriber)
        if audience is None:
            return False  # its client was removed: nobody to tell
        if addressed_to(resource_type, resource, audience.organization):
            return True
        access = await self.audiences.access(self.store, audience)
        return acc.visible(access, resource_type, body)


async def _search_match(tx: StoreTransaction, subscription: model.Subscription, resource_id: str) -> bool:
    """Criteria the index rows cannot decide alone (chains, _has): the search, inside the transaction,
    restricted to this resource."""
    query = model.parse_query(subscription.resource_type, (*subscription.params, ("_id", resource_id)))
    page = await tx.search(query)
    return any(m.id == resource_id for m in page.matches)


_ENGINES: dict[str, Engine] = {}


def engine_for(store: Any) -> Engine:
    """This process's engine for ``store`` (one per store URL)."""
    backend = getattr(store, "backend", store)  # the same engine through a timing wrapper
    engine = _ENGINES.get(store.url)
    if engine is None or engine.store is not backend:
        engine = _ENGINES[store.url] = Engine(backend)
    return engine
