"""Delivering notifications: a background job on the shared runner (one per store, held by a lease).

For each subscription the dispatcher keeps a small delivery state in the store's key/value area
(``subscriptions.delivery``): the last event number the endpoint acknowledged, how many attempts have
failed since when, and when to try again. It

- sends the handshake to a ``requested`` rest-hook subscription and makes it ``active`` when the
  endpoint answers 2xx (``error`` after three failed tries); websocket subscriptions become active
  at once (their clients connect to the server);
- delivers the events recorded for an ``active`` subscription in order, every pending event in one
  notification up to the channel's max count (the server's cap, 100, when it gives none), at least
  once: the state moves on only after a 2xx, so after a crash (even ``kill -9``) the events since
  the last acknowledged one are sent again, with the same numbers;
- retries a failing endpoint with exponential back-off (1 s doubling, at most 10 minutes apart)
  for ``TERMTEM_SUBSCRIPTION_RETRY`` seconds (24 h by default), then sets the subscription to
  ``error`` with the reason in ``Subscription.error``; its events keep being recorded and stay
  retrievable with ``$events`` (a client re-requests it to resume delivery from where it stopped);
- sends a heartbeat when nothing was sent to the subscription for its heartbeat period (so none
  while events flow), switches a subscription ``off`` once its ``end`` has passed, and forgets
  delivered events after ``TERMTEM_SUBSCRIPTION_KEEP_DAYS`` days.

Throughput: the runner reads the outbox once per step for every subscription (``step(fresh)``) and
the dispatcher keeps those events per subscription, so a delivery reads the store only when its
events are not all in hand (after a restart, or a backlog beyond the buffer); subscriptions are
served concurrently (at most ``TERMTEM_SUBSCRIPTION_CONCURRENCY`` requests in flight), each in order,
over kept-alive connections per endpoint. Every delivery resolves the endpoint again and checks each
address (``endpoints``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from fhir_server import fhirjson
from fhir_server.security import access as acc
from fhir_server.storage.base import OutboxEvent
from fhir_server.subscriptions import endpoints, notifications
from fhir_server.subscriptions.engine import STREAM_PREFIX, engine_for, read_subscription, stream
from fhir_server.subscriptions.model import Subscription

log = logging.getLogger("termtem.subscriptions")

STATE_NAMESPACE = "subscriptions.delivery"
STATE_KEY = "states"  # one record holding every subscription's state: one write per flush
_FLUSH_EVERY = 0.5  # seconds; a crash repeats at most this much delivery (at least once)
HANDSHAKE_TRIES = 3
FIRST_RETRY = 1.0  # seconds; doubles on each failure
LONGEST_RETRY = 600.0
_RELOAD = 2.0  # seconds between looks at the Subscription resources
_TRIM_EVERY = 600.0
_SPACING = 0.2  # seconds between two part-filled notifications to one subscription
_POOL_SIZE = 8  # connections kept per endpoint (several subscriptions may share one)
_CLOSE_WAIT = 5.0  # seconds a closing dispatcher waits for the deliveries in flight
_REPLY_BYTES = 64 * 1024  # of an endpoint's answer read (only its status counts)
_BUFFERED = 2_000  # events kept in memory per subscription; beyond, they are read from the store


@dataclass
class DeliveryState:
    delivered: int = 0  # the last event number the endpoint acknowledged
    attempts: int = 0  # failures since the last success
    failing_since: float | None = None  # epoch seconds of the first failure in a row
    next_attempt: float = 0.0
    last_error: str | None = None
    last_sent: float = 0.0
    version: int = 0  # the Subscription version this state's handshake belongs to

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> DeliveryState:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures in a row (with a little jitter)."""
    delay = min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)
    return float(delay * (1 + random.random() * 0.1))


class Dispatcher:
    def __init__(
        self,
        store: Any,
        settings: Any,
        base_url: str,
        *,
        spacing: float = _SPACING,
    ) -> None:
        self.store = store
        self.spacing = spacing
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.policy = endpoints.EndpointPolicy.from_settings(settings)
        # A kept-alive connection pool per endpoint (aiohttp: a fifth of httpx's CPU per request,
        # which counts when the lease holder also serves the API).
        self._pools: dict[str, aiohttp.ClientSession] = {}
        self._pool_used: dict[str, float] = {}
        self._slots = asyncio.Semaphore(max(1, int(getattr(settings, "subscription_concurrency", 32))))
        # Set when a delivery ends or a step should come sooner (the runner waits on it too).
        self.wake = asyncio.Event()
        self._pending: dict[str, list[OutboxEvent]] = {}  # recorded events in hand, by number
        self._written: dict[str, int] = {}  # the Subscription version this dispatcher last wrote
        self._drained: dict[str, int] = {}  # event count at which the store had nothing more to send
        self.store_reads = 0  # outbox reads a delivery had to make (events not in hand)
        self.states: dict[str, DeliveryState] = {}
        self._dirty: set[str] = set()
        self._subscriptions: dict[str, Subscription] = {}
        self._loaded = 0.0
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._trimmed = 0.0
        self._known: dict[str, int] = {}  # per subscription, the highest event number known recorded
        self._states_loaded = False
        self._flushed = 0.0
        self._flushing: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    async def close(self, *, save: bool = True) -> None:
        """Stop the deliveries in flight and save the states (``save=False``: the lease was lost,
        the next holder's states are the ones that count)."""
        busy = list(self._busy.values())
        if busy:  # deliveries in flight end on their own (each request has its timeout)...
            await asyncio.wait(busy, timeout=_CLOSE_WAIT)
        for task in busy:  # ...or are stopped: an unacknowledged notification is sent again later
            task.cancel()
        for task in busy:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._flushing is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flushing
        if save:
            await self.flush()
        for pool in list(self._pools.values()):
            with contextlib.suppress(Exception):
                await pool.close()
        self._pools.clear()

    # --- the loop --------------------------------------------------------------------------------

    async def step(self, fresh: list[OutboxEvent] = ()) -> None:  # type: ignore[assignment]
        """One look at every subscription, given the events recorded since the last look (read once
        for all of them): start what is due (deliveries run concurrently, one at a time per
        subscription)."""
        now = time.time()
        self.wake.clear()
        for event in fresh:
            if event.stream.startswith(STREAM_PREFIX):
                sid = event.stream[len(STREAM_PREFIX) :]
                self._known[sid] = max(self._known.get(sid, 0), event.number)
                self._keep(sid, event)
        if now - self._loaded > _RELOAD:
            await self._reload()
        for subscription in list(self._subscriptions.values()):
            if subscription.id in self._busy:
                continue
            if await self._due(subscription, now):
                self._busy[subscription.id] = asyncio.get_running_loop().create_task(self._work(subscription))
        if time.monotonic() - self._flushed >= _FLUSH_EVERY and (
            self._flushing is None or self._flushing.done()
        ):
            # In the background: saving waits for the store's write lock, which busy writers in
            # other processes may hold for a while; deliveries go on meanwhile.
            self._flushed = time.monotonic()
            self._flushing = asyncio.get_running_loop().create_task(self._flush_logged())
        if now - self._trimmed > _TRIM_EVERY:
            self._trimmed = now
            await self._trim()

    def _keep(self, subscription_id: str, event: OutboxEvent) -> None:
        """Hold a fresh event for its delivery (only for subscriptions being delivered, within bounds)."""
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None or subscription.channel != "rest-hook":
            return
        held = self._pending.setdefault(subscription_id, [])
        if len(held) < _BUFFERED and (not held or held[-1].number < event.number):
            held.append(event)

    async def _batch(self, subscription: Subscription, state: DeliveryState) -> list[OutboxEvent]:
        """The next events to deliver, in order from the one after the last acknowledged, at most the
        max count: from memory when they are all there without a gap, else from the store."""
        held = self._pending.get(subscription.id)
        if held:
            first = next((n for n, e in enumerate(held) if e.number > state.delivered), len(held))
            if first:
                del held[:first]
        if held and held[0].number == state.delivered + 1:
            batch = [held[0]]
            for event in held[1 : subscription.max_count]:
                if event.number != batch[-1].number + 1:
                    break
                batch.append(event)
            return batch
        if self._known.get(subscription.id, 0) <= state.delivered and not held:
            return []
        self.store_reads += 1
        events = await self.store.outbox_read(
            stream(subscription.id), after=state.delivered, limit=subscription.max_count
        )
        if not events:  # known but gone (trimmed): not due again until a new event comes
            self._drained[subscription.id] = self._known.get(subscription.id, 0)
        return list(events)

    async def settle(self) -> None:
        """Wait for the deliveries started so far (tests and shutdown)."""
        while self._busy:
            await asyncio.gather(*list(self._busy.values()), return_exceptions=True)
        await self.flush()

    async def _reload(self) -> None:
        found: dict[str, Subscription] = {}
        async for stored in self.store.iterate("Subscription"):
            subscription = read_subscription(stored)
            if subscription is not None and subscription.status in ("requested", "active"):
                found[subscription.id] = subscription
                if subscription.id not in self._known:
                    self._known[subscription.id] = await self.store.outbox_last(stream(subscription.id))
        for sid, version in self._written.items():
            # A look that began before this dispatcher changed a status must not bring back the old
            # version (a requested subscription already active would get its handshake again).
            seen = found.get(sid)
            if seen is not None and seen.version >= version:
                continue
            mine = self._subscriptions.get(sid)
            if mine is not None and mine.version >= version:
                found[sid] = mine
            else:
                found.pop(sid, None)
        for gone in set(self._pending) - set(found):
            del self._pending[gone]
        self._subscriptions = found
        self._loaded = time.time()

    async def _state(self, subscription_id: str) -> DeliveryState:
        if not self._states_loaded:
            stored = await self.store.kv_get(STATE_NAMESPACE, STATE_KEY) or {}
            for sid, data in stored.items():
                self.states.setdefault(sid, DeliveryState.load(data))
            self._states_loaded = True
        state = self.states.get(subscription_id)
        if state is None:
            state = self.states[subscription_id] = DeliveryState()
        return state

    def _changed(self, subscription_id: str) -> None:
        self._dirty.add(subscription_id)

    async def flush(self) -> None:
        """Save the delivery states (all in one record, so one write however many changed)."""
        async with self._flush_lock:  # one at a time: an older picture never overwrites a newer one
            if not self._dirty or not self._states_loaded:
                return
            dirty, self._dirty = self._dirty, set()
            self._flushed = time.monotonic()
            picture = {k: asdict(v) for k, v in self.states.items()}
            try:
                await self.store.kv_put(STATE_NAMESPACE, STATE_KEY, picture)
            except BaseException:
                self._dirty |= dirty
                raise

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:  # saved at the next flush; meanwhile a crash repeats a little more
            log.exception("saving the delivery states failed; trying again")

    async def _due(self, subscription: Subscription, now: float) -> bool:
        if subscription.end and _passed(subscription.end, now):
            return True
        if subscription.status == "requested":
            state = await self._state(subscription.id)
            return state.version != subscription.version or now >= state.next_attempt
        if subscription.channel != "rest-hook":
            return False
        state = await self._state(subscription.id)
        if now < state.next_attempt:
            return False
        known = self._known.get(subscription.id, 0)
        if known > state.delivered and self._drained.get(subscription.id) != known:
            return self._ready(subscription, state, now)
        return bool(subscription.heartbeat and now - state.last_sent >= subscription.heartbeat)

    async def _work(self, subscription: Subscription) -> None:
        try:
            now = time.time()
            if subscription.end and _passed(subscription.end, now):
                await self.set_status(subscription, "off", None)
            elif subscription.status == "requested":
                await self._activate(subscription)
            else:
                await self._deliver(subscription)
        except Exception as exc:  # one subscription's trouble must not stop the others
            log.exception("Subscription/%s: delivery failed unexpectedly", subscription.id)
            state = self.states.get(subscription.id)
            if state is not None:  # backs off like a failing endpoint (no busy loop on a bug)
                self._failed(subscription.id, state, f"internal error: {type(exc).__name__}")
        finally:
            # Done here rather than in a callback: the next step (woken now) can start it again at once.
            self._busy.pop(subscription.id, None)
            self.wake.set()

    # --- handshake, events, heartbeats ------------------------------------------------------------

    async def _activate(self, subscription: Subscription) -> None:
        state = await self._state(subscription.id)
        if state.version != subscription.version:
            # A new or re-requested subscription: a fresh handshake; delivery resumes after the last
            # acknowledged event (nothing already delivered is sent twice, nothing recorded is lost).
            state.version, state.attempts, state.failing_since = subscription.version, 0, None
            state.next_attempt, state.last_error = 0.0, None
            self._changed(subscription.id)
        if subscription.channel != "rest-hook":
            await self.set_status(subscription, "active", None)
            return
        total = await self.store.outbox_last(stream(subscription.id))
        error = await self._send(subscription, "requested", "handshake", total)
        if error is None:
            self._succeeded(subscription.id, state)
            await self.set_status(subscription, "active", None)
            return
        self._failed(subscription.id, state, error)
        if state.attempts >= HANDSHAKE_TRIES:
            await self.set_status(subscription, "error", f"handshake failed: {error}")

    async def _deliver(self, subscription: Subscription) -> None:
        state = await self._state(subscription.id)
        while True:
            events = await self._batch(subscription, state)
            total = max(self._known.get(subscription.id, 0), events[-1].number if events else 0)
            self._known[subscription.id] = total
            if not events:
                if subscription.heartbeat and time.time() - state.last_sent >= subscription.heartbeat:
                    if total == 0:  # nothing known in memory yet: the count from the store
                        total = await self.store.outbox_last(stream(subscription.id))
                    error = await self._send(subscription, "active", "heartbeat", total)
                    if error is None:
                        self._succeeded(subscription.id, state)
                    else:  # an endpoint that fails its heartbeat backs off like any other
                        self._failed(subscription.id, state, error)
                return
            foci = await self.foci(subscription, events)
            error = await self._send(subscription, "active", "event-notification", total, foci)
            if error is not None:
                self._failed(subscription.id, state, error)
                assert state.failing_since is not None
                if time.time() - state.failing_since >= self.settings.subscription_retry_seconds:
                    await self.set_status(
                        subscription,
                        "error",
                        f"notifications failed for {self.settings.subscription_retry_seconds} s;"
                        f" last error: {error}; undelivered events from"
                        f" {state.delivered + 1} stay retrievable with $events",
                    )
                return
            state.delivered = events[-1].number
            self._succeeded(subscription.id, state)
            if not self._ready(subscription, state, time.time()):
                return  # the rest in a moment (``_due``)

    def _ready(self, subscription: Subscription, state: DeliveryState, now: float) -> bool:
        """A full notification goes at once; a part-filled one waits ``spacing`` after the last (the
        events arriving meanwhile join it: fewer, fuller requests under load)."""
        backlog = self._known.get(subscription.id, 0) - state.delivered
        return backlog >= subscription.max_count or now - state.last_sent >= self.spacing

    async def _send(
        self,
        subscription: Subscription,
        status: str,
        kind: str,
        total: int,
        foci: list[notifications.Focus] | None = None,
    ) -> str | None:
        """Build and post one notification; the error, or None when the endpoint acknowledged it."""
        note = notifications.bundle(
            base_url=self.base_url,
            subscription_id=subscription.id,
            status=status,
            kind=kind,
            events_since_start=total,
            foci=foci or [],
            content=subscription.content,
        )
        return await self._post(subscription, note)

    def _succeeded(self, subscription_id: str, state: DeliveryState) -> None:
        """An acknowledged notification: any back-off is over."""
        state.attempts, state.failing_since, state.last_error, state.next_attempt = 0, None, None, 0.0
        state.last_sent = time.time()
        self._changed(subscription_id)

    def _failed(self, subscription_id: str, state: DeliveryState, error: str) -> None:
        now = time.time()
        state.attempts += 1
        state.failing_since = state.failing_since or now
        state.next_attempt = now + backoff(state.attempts)
        state.last_error = error[:500]
        self._changed(subscription_id)
        log.info(
            "Subscription/%s: delivery failed (%s); next try in %.0f s",
            subscription_id,
            error,
            state.next_attempt - now,
        )

    async def foci(self, subscription: Subscription, events: list[OutboxEvent]) -> list[notifications.Focus]:
        return await load_foci(self.store, subscription, events)

    async def _post(self, subscription: Subscription, note: dict[str, Any]) -> str | None:
        """Send one notification; None when the endpoint acknowledged it, else what went wrong."""
        assert subscription.endpoint is not None
        try:
            target = await endpoints.resolve(subscription.endpoint, self.policy)
        except endpoints.EndpointRefused as refused:
            return f"endpoint refused: {refused}"
        headers = {
            **dict(subscription.headers),
            "Content-Type": "application/fhir+json",
            "Host": target.host_header(),
        }
        limit = aiohttp.ClientTimeout(total=subscription.timeout or self.settings.subscription_timeout)
        https = target.url.lower().startswith("https:")
        try:
            async with (
                self._slots,  # a cap on requests in flight, whatever the number of endpoints
                self._pool(target).post(
                    target.connect_url(),
                    data=fhirjson.dumps(note),
                    headers=headers,
                    timeout=limit,
                    allow_redirects=False,
                    server_hostname=target.host if https else None,  # TLS name: the endpoint's host
                ) as reply,
            ):
                status = reply.status
                await reply.content.read(_REPLY_BYTES)  # the rest, if any, is dropped with the connection
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        if 200 <= status < 300:
            return None
        return f"the endpoint answered HTTP {status}"

    def _pool(self, target: endpoints.Endpoint) -> aiohttp.ClientSession:
        """The endpoint's connection pool: by the checked address it connects to and the name it
        presents (TLS, Host), so a connection is reused only for the same endpoint."""
        parts = urlsplit(target.connect_url())
        key = f"{parts.scheme}://{parts.netloc} as {target.host}"
        pool = self._pools.get(key)
        if pool is None or pool.closed:
            connector = aiohttp.TCPConnector(limit=_POOL_SIZE, use_dns_cache=False)
            pool = self._pools[key] = aiohttp.ClientSession(connector=connector, trust_env=False)
        self._pool_used[key] = time.monotonic()
        return pool

    async def _close_idle_pools(self) -> None:
        cutoff = time.monotonic() - _TRIM_EVERY
        for key in [k for k, used in self._pool_used.items() if used < cutoff]:
            self._pool_used.pop(key, None)
            pool = self._pools.pop(key, None)
            if pool is not None:
                with contextlib.suppress(Exception):
                    await pool.close()

    # --- status changes the server makes -----------------------------------------------------------

    async def set_status(self, subscription: Subscription, status: str, error: str | None) -> None:
        """Write the Subscription's new status (a server-made version), unless a client changed it since."""
        from fhir_server.interactions import writes

        async with self.store.transaction() as tx:
            current = await tx.read("Subscription", subscription.id)
            if current is None or current.deleted or current.version != subscription.version:
                self._loaded = 0.0  # changed by a client meanwhile: look again
                return
            resource = orjson.loads(current.body)
            if resource.get("status") == status and resource.get("error") == error:
                return
            resource["status"] = status
            body = fhirjson.replace_member(current.body, "status", status)
            if error is None:
                resource.pop("error", None)
                body = fhirjson.build_object([(k, v) for k, v in fhirjson.members(body) if k != "error"])
            else:
                resource["error"] = error
                body = fhirjson.replace_member(body, "error", error)
            stored = await writes.write_version(
                tx, "Subscription", subscription.id, resource, body, current=current, method="PUT"
            )
        log.info("Subscription/%s is now %s%s", subscription.id, status, f" ({error})" if error else "")
        self._loaded = 0.0
        self._written[subscription.id] = stored.version
        if status in ("active", "requested"):
            self._subscriptions[subscription.id] = read_subscription(stored) or subscription
        else:
            self._subscriptions.pop(subscription.id, None)

    async def _trim(self) -> None:
        """Forget delivered events older than the retention period (and close unused pools)."""
        await self._close_idle_pools()
        cutoff = datetime.fromtimestamp(time.time() - self.settings.subscription_keep_days * 86400, UTC)
        limit = cutoff.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        for subscription_id, state in list(self.states.items()):
            old = [
                e.number
                for e in await self.store.outbox_read(stream(subscription_id), after=0, limit=1000)
                if e.number <= state.delivered and e.recorded < limit
            ]
            if old:
                await self.store.outbox_trim(stream(subscription_id), max(old))


async def load_foci(
    store: Any, subscription: Subscription, events: list[OutboxEvent]
) -> list[notifications.Focus]:
    """The events with their resources where the content asks for them and the subscriber's agency
    may see them now (otherwise the focus is named without the resource)."""
    if subscription.content != "full-resource":
        return [notifications.Focus(e) for e in events]
    engine = engine_for(store)
    audience = await engine.audiences.get(store, subscription.subscriber)
    access = await engine.audiences.access(store, audience) if audience is not None else None
    out = []
    for event in events:
        resource = None
        rtype, _, rid = str(event.payload["focus"]).partition("/")
        stored = await store.vread(rtype, rid, int(event.payload.get("version", 0)))
        seen = audience is not None and stored is not None and not stored.deleted
        if seen and stored is not None and acc.visible(access, rtype, stored.body):
            resource = orjson.loads(stored.body)
        out.append(notifications.Focus(event, resource))
    return out


def _passed(instant: str, now: float) -> bool:
    try:
        moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() <= now
