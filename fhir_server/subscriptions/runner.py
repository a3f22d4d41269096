"""The server's background job for notifications: delivery and the overdue sweep, under one lease.

Started with the server (``TERMTEM_SUBSCRIPTION_DELIVERY=on``, the default) and stopped with it. It
waits for new outbox events (woken at once by a commit in this process or by the end of a delivery,
looking at the store every ``TERMTEM_SUBSCRIPTION_POLL`` seconds, 0.1, for other processes' commits:
one indexed ``max(seq)`` read), reads them once for every subscription, runs a dispatcher step
(handshakes, deliveries, retries, heartbeats) and, every ``TERMTEM_OVERDUE_SWEEP`` seconds, announces
overdue referrals (``workflow.overdue``).

Several server processes may share one store: the job runs in the one holding the lease (a record in
the store's key/value area, renewed every few seconds, taken over when it lapses, e.g. after a
``kill -9``). Delivery is at least once either way: the delivery state moves on only after the
endpoint acknowledged, so a notification interrupted by a crash is sent again with its number.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from fhir_server.subscriptions.dispatcher import Dispatcher

log = logging.getLogger("termtem.subscriptions")

LEASE_NAMESPACE = "subscriptions.lease"
LEASE_KEY = "background"
LEASE_SECONDS = 10.0
_RENEW = 3.0
_POLL = 1.0  # seconds to wait after a failed turn


class Background:
    def __init__(self, store: Any, settings: Any, base_url: str, *, poll: float | None = None) -> None:
        self.store = store
        # Seconds between looks for other processes' commits.
        self.poll = poll if poll is not None else float(getattr(settings, "subscription_poll", 0.1))
        self.settings = settings
        self.base_url = base_url
        self.holder = uuid.uuid4().hex
        self.dispatcher: Dispatcher | None = None
        self._stop = asyncio.Event()
        self._holding = asyncio.Event()  # set while this process holds the lease
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=10)
        if self.dispatcher is not None:
            await self.dispatcher.close()
            self.dispatcher = None
        with contextlib.suppress(Exception):
            lease = await self.store.kv_get(LEASE_NAMESPACE, LEASE_KEY)
            if lease and lease.get("holder") == self.holder:
                await self.store.kv_delete(LEASE_NAMESPACE, LEASE_KEY)

    async def _lease(self) -> bool:
        """Take or renew the lease; True while this process holds it."""
        now = time.time()
        lease = await self.store.kv_get(LEASE_NAMESPACE, LEASE_KEY)
        if lease and lease.get("holder") != self.holder and float(lease.get("until", 0)) > now:
            return False
        mine = {"holder": self.holder, "until": now + LEASE_SECONDS}
        # Compare-and-set: of several processes that saw the lease free, exactly one takes it (a
        # write-then-read-back could let two believe they hold it, and both would deliver).
        return bool(await self.store.kv_compare_and_set(LEASE_NAMESPACE, LEASE_KEY, lease, mine))

    async def _run(self) -> None:
        keeper = asyncio.get_running_loop().create_task(self._keep_lease())
        seen = 0
        swept = 0.0
        sweeping: asyncio.Task[None] | None = None
        try:
            while not self._stop.is_set():
                try:
                    if not self._holding.is_set():
                        if self.dispatcher is not None:  # lost: whoever holds it now delivers
                            await self.dispatcher.close(save=False)
                            self.dispatcher = None
                        await self._until_holding()
                        continue
                    if self.dispatcher is None:
                        self.dispatcher = Dispatcher(self.store, self.settings, self.base_url)
                    latest = await self._wait(seen)
                    fresh = await self.store.outbox_since(seen, limit=10_000) if latest > seen else []
                    if fresh:
                        seen = fresh[-1].seq
                    await self.dispatcher.step(fresh)
                    if time.monotonic() - swept >= self.settings.overdue_sweep_seconds and (
                        sweeping is None or sweeping.done()
                    ):
                        swept = time.monotonic()
                        sweeping = asyncio.get_running_loop().create_task(self._sweep())
                except asyncio.CancelledError:
                    raise
                except Exception:  # the job must outlive one bad turn (a store hiccup, a bad resource)
                    log.exception("notification job: one turn failed; going on")
                    await self._sleep(_POLL)
        finally:
            # Both end by themselves once stopping (the keeper after its renewal, the sweep after its
            # pass): cancelled in the middle of a store transaction, they would leave it to roll back.
            for task in (keeper, sweeping):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _keep_lease(self) -> None:
        """Take or renew the lease every few seconds, beside the deliveries (a renewal waiting for the
        store's write lock does not hold them up)."""
        while not self._stop.is_set():
            try:
                if await self._lease():
                    self._holding.set()
                else:
                    self._holding.clear()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification job: the lease could not be renewed; trying again")
            await self._sleep(_RENEW)

    async def _until_holding(self) -> None:
        holding = asyncio.ensure_future(self._holding.wait())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((holding, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            holding.cancel()
            stopping.cancel()

    async def _sweep(self) -> None:
        from fhir_server.workflow.overdue import sweep

        try:
            await sweep(self.store)
        except Exception:
            log.exception("overdue sweep failed; trying again at the next one")

    async def _wait(self, seen: int) -> int:
        """The newest outbox ``seq`` once there is something to do: an event past ``seen`` (this
        process's commits wake it at once), a delivery that ended, or the poll interval gone by."""
        assert self.dispatcher is not None
        if self.dispatcher.wake.is_set():
            return await self.store.outbox_wait(seen, timeout=0)
        waiting = asyncio.ensure_future(self.store.outbox_wait(seen, timeout=self.poll))
        woken = asyncio.ensure_future(self.dispatcher.wake.wait())
        try:
            await asyncio.wait((waiting, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        return await self.store.outbox_wait(seen, timeout=0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
