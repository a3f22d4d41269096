"""The analytics state of one server process: the warehouse, its refresher, cached results and the
dashboard's figures.

The warehouse lives in memory and is built from the store in the background the first time anything
needs it (the server answers meanwhile); afterwards a refresher polls the store's history every few
seconds and applies only what changed, then recomputes the dashboard's figures. Reports and pages
read those results: nothing on a page load scans the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from fhir_server.analytics.measures.evaluate import MeasureResult, Subject, evaluate, evaluate_periods
from fhir_server.analytics.measures.library import shipped_measures
from fhir_server.analytics.measures.plan import MeasurePlan, compile_measure
from fhir_server.analytics.measures.protect import cell_key_secret, perturbed
from fhir_server.analytics.warehouse import Warehouse

log = logging.getLogger("termtem.analytics")
_CACHE_SIZE = 256


def refresh_interval() -> float:
    return float(os.environ.get("TERMTEM_ANALYTICS_REFRESH_SECONDS", "5"))


def figures_interval() -> float:
    """At most one recomputation of the dashboard's figures in this many seconds (busy servers)."""
    return float(os.environ.get("TERMTEM_ANALYTICS_FIGURES_SECONDS", "30"))


@dataclass
class Figures:
    """What the dashboard shows, computed after each change: per period, measure and group, the whole
    of Bangkok and each district, as aggregate-only roles may see them (perturbed by cell key)."""

    generation: int
    computed_at: float
    periods: list[tuple[str, date, date]]  # key, start, end (oldest first; the last is "12 months")
    results: dict[tuple[str, str], MeasureResult]  # (period key, measure id) -> district-stratified
    agencies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # district -> agencies
    seconds: float = 0.0


def dashboard_periods(today: date) -> list[tuple[str, date, date]]:
    """The last eight calendar quarters (trends), the last two calendar years, and the twelve months up
    to today (the map's default), oldest first."""
    quarter = (today.month - 1) // 3
    year = today.year
    out = []
    for _ in range(8):
        start = date(year, quarter * 3 + 1, 1)
        end_month = quarter * 3 + 3
        end = (date(year + (end_month == 12), end_month % 12 + 1, 1)) - timedelta(days=1)
        out.append((f"{year}-Q{quarter + 1}", start, end))
        quarter -= 1
        if quarter < 0:
            quarter, year = 3, year - 1
    out.reverse()
    out += [(str(y), date(y, 1, 1), date(y, 12, 31)) for y in (today.year - 2, today.year - 1)]
    out.append(("12m", today - timedelta(days=364), today))
    return out


class Analytics:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.warehouse = Warehouse()
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._cache: OrderedDict[tuple[Any, ...], MeasureResult] = OrderedDict()
        self._plans: dict[str, tuple[str, MeasurePlan]] = {}
        self.figures: Figures | None = None
        self.error: str | None = None
        self._stale = False  # the warehouse changed since the figures were computed
        self._secret: str | None = None  # for cell keys (aggregate-only figures)

    # -- lifetime -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Build in the background (idempotent); ``ready`` waits for it."""
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._first_build())

    async def _first_build(self) -> None:
        try:
            async with self._lock:
                await self.warehouse.build(self.store)
                await self._compute_figures()
        except Exception as exc:  # reported on the dashboard and in the log; never kills the server
            log.exception("analytics warehouse build failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def ready(self, timeout: float | None = None) -> bool:
        self.start()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(refresh_interval())
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("analytics refresh failed")

    async def refresh(self, *, figures_now: bool = False) -> bool:
        """Apply the store's changes now; the figures follow at once when ``figures_now`` or when the
        last computation is older than ``figures_interval()``. True when anything changed."""
        await self.ready()
        async with self._lock:
            changed = await self.warehouse.refresh(self.store)
            if changed:
                self._cache.clear()
                self._stale = True
            due = self.figures is None or time.time() - self.figures.computed_at >= figures_interval()
            if self._stale and (figures_now or due):
                await self._compute_figures()
                self._stale = False
            return changed

    async def stop(self) -> None:
        for task in (self._task, self._starting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.warehouse.close()

    # -- measures -----------------------------------------------------------------------------------
    def plan(self, measure: dict[str, Any]) -> MeasurePlan:
        """The compiled plan of a Measure resource (cached per id and version)."""
        key = str(measure.get("id") or measure.get("url"))
        stamp = orjson.dumps([measure.get("meta", {}).get("versionId"), measure.get("group")]).decode()
        cached = self._plans.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        plan = compile_measure(measure, self.warehouse.columns())
        self._plans[key] = (stamp, plan)
        return plan

    async def secret(self) -> str:
        if self._secret is None:
            self._secret = await cell_key_secret(self.store)
        return self._secret

    async def evaluate(
        self,
        plan: MeasurePlan,
        start: date,
        end: date,
        subject: Subject | None = None,
        stratify: bool = True,
        *,
        protected: bool = False,
    ) -> MeasureResult:
        """The measure's result; ``protected`` gives what an aggregate-only role may see (perturbed by
        cell key; small cells are withheld by the report)."""
        await self.ready()
        key = (plan.url, plan.version, id(plan), start, end, subject, stratify, protected)
        key += (self.warehouse.generation,)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        secret = await self.secret() if protected else None
        result = await asyncio.to_thread(
            evaluate, self.warehouse.query, plan, start, end, subject, stratify, secret
        )
        if protected:
            result = perturbed(result)
        self._cache[key] = result
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    # -- dashboard figures --------------------------------------------------------------------------
    async def _compute_figures(self) -> None:
        started = time.perf_counter()
        periods = dashboard_periods(date.today())
        results: dict[tuple[str, str], MeasureResult] = {}
        secret = await self.secret()
        for measure in shipped_measures():
            plan = self.plan(measure)
            by_period = await asyncio.to_thread(
                evaluate_periods, self.warehouse.query, _district_only(plan), periods, None, True, secret
            )
            for key, result in by_period.items():
                results[(key, plan.id)] = perturbed(result)
        agencies: dict[str, list[dict[str, Any]]] = {}
        rows = self.warehouse.query(
            "SELECT organization_id, name, name_en, kind, district_code FROM agencies"
            " WHERE kind IN ('health-centre', 'childcare-centre', 'school') ORDER BY kind, name"
        )
        for oid, name, name_en, kind, district in rows:
            agencies.setdefault(district or "", []).append(
                {"id": oid, "name": name, "name_en": name_en, "kind": kind}
            )
        self.figures = Figures(
            generation=self.warehouse.generation,
            computed_at=time.time(),
            periods=periods,
            results=results,
            agencies=agencies,
            seconds=time.perf_counter() - started,
        )


def _district_only(plan: MeasurePlan) -> MeasurePlan:
    from dataclasses import replace

    return replace(plan, groups=[replace(g, stratifiers=["district"]) for g in plan.groups])


def analytics_of(state: Any) -> Analytics:
    """The app's Analytics (``app.state``), created on first use."""
    analytics = getattr(state, "analytics", None)
    if analytics is None:
        analytics = Analytics(state.store)
        state.analytics = analytics
    return analytics


async def stop_analytics(state: Any) -> None:
    analytics = getattr(state, "analytics", None)
    if analytics is not None:
        await analytics.stop()
        state.analytics = None
