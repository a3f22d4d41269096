"""Committee figures resist differencing: a total minus the strata shown does not give the withheld
strata, the same cell shows the same figure in reports and on the dashboard, and committees cannot pick
overlapping periods to subtract."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir_server.analytics.measures.evaluate import Cell
from fhir_server.analytics.measures.protect import (
    SECRET_KEY,
    SECRET_NAMESPACE,
    published_count,
    published_period,
)
from fhir_server.analytics.service import analytics_of
from tests.analytics.population import load_population
from tests.security.conftest import World

Table = tuple[int | None, dict[str, int | None]]  # total, stratum -> count (None: withheld)


def _count(population: dict[str, Any]) -> int | None:
    return population.get("count")


def tables(report: dict[str, Any], stratifier: str = "district") -> dict[tuple[str, str], Table]:
    """(group, population code) -> the total and the stratifier's strata of that population."""
    out: dict[tuple[str, str], Table] = {}
    for g in report["group"]:
        label = g["code"]["coding"][0]["code"]
        totals = {p["code"]["coding"][0]["code"]: _count(p) for p in g["population"]}
        for s in g.get("stratifier", []):
            if s["code"][0]["text"] != stratifier:
                continue
            for code, total in totals.items():
                strata = {}
                for st in s["stratum"]:
                    cell = next(p for p in st["population"] if p["code"]["coding"][0]["code"] == code)
                    strata[st["value"]["text"]] = _count(cell)
                out[(label, code)] = (total, strata)
    return out


async def test_totals_minus_strata_do_not_reveal_withheld_strata(world: World) -> None:
    await world.store.kv_put(SECRET_NAMESPACE, SECRET_KEY, {"secret": "a fixed secret for this test"})
    admin = await world.caller("admin", "Organization/ops", "admin")
    committee = await world.caller("committee", "Organization/ops", "committee")
    await load_population(world.store, seed=34, children=150)
    attacks, exact, visible, moved = 0, 0, 0, 0
    for measure in ("dspm-coverage", "referrals", "epi-coverage"):
        url = f"Measure/{measure}/$evaluate-measure?periodStart=2025-01-01&periodEnd=2025-12-31"
        truth_reply, shown_reply = await admin.get(url), await committee.get(url)
        assert truth_reply.status_code == shown_reply.status_code == 200, shown_reply.text
        for stratifier in ("district", "sex"):
            truth = tables(truth_reply.json(), stratifier)
            shown = tables(shown_reply.json(), stratifier)
            assert truth.keys() == shown.keys() and truth
            attacks, exact, visible, moved = _attack(truth, shown, (attacks, exact, visible, moved))
    assert attacks >= 6, attacks
    assert exact <= attacks // 3, (exact, attacks)
    assert visible and moved >= visible // 3, (moved, visible)


def _attack(
    truth: dict[tuple[str, str], Table], shown: dict[tuple[str, str], Table], tally: tuple[int, ...]
) -> tuple[int, ...]:
    """Total minus the strata shown, against the withheld strata's true sum; and the noise bounds."""
    attacks, exact, visible, moved = tally
    for key, (true_total, true_strata) in truth.items():
        # unprotected, the attack is exact: every child is in one stratum (or 'unknown')
        assert true_total == sum(v or 0 for v in true_strata.values()), key
        total, strata = shown[key]
        for name, count in strata.items():
            if count is not None:
                visible += 1
                true_count = true_strata[name]
                assert true_count is not None and count >= 5 and abs(count - true_count) <= 2
                moved += count != true_count
        withheld = [name for name, count in strata.items() if count is None]
        if total is None or not withheld:
            continue
        attacks += 1
        guess = total - sum(c for c in strata.values() if c is not None)
        exact += guess == sum(true_strata[name] or 0 for name in withheld)
    return attacks, exact, visible, moved


async def test_the_same_cell_shows_the_same_figure_everywhere(world: World) -> None:
    committee = await world.caller("committee", "Organization/ops", "committee")
    await load_population(world.store, seed=35, children=120)
    analytics = analytics_of(world.app.state)
    assert await analytics.ready(timeout=300)
    await analytics.refresh(figures_now=True)
    figures = analytics.figures
    assert figures is not None
    year = next(key for key, _, _ in figures.periods if key.isdigit() and key.startswith("2025"))
    url = f"Measure/dspm-coverage/$evaluate-measure?periodStart={year}&periodEnd={year}"
    first, again = (await committee.get(url)).json(), (await committee.get(url)).json()
    first.pop("date"), again.pop("date")
    assert first == again  # asking again gives nothing new to average
    report = tables(first)
    result = figures.results[(year, "dspm-coverage")]
    compared = 0
    for group in result.groups:
        code = group.plan.source["code"]["coding"][0]["code"]
        for stratum in group.strata["district"]:
            for population, cell in stratum.populations.items():
                shown = report[(code, population)][1][stratum.value or "unknown"]
                on_page = None if cell.children < 5 else cell.count
                assert shown == on_page, (code, stratum.value, population)
                compared += 1
    assert compared > 20


async def test_committees_ask_for_whole_quarters_or_years(world: World) -> None:
    admin = await world.caller("admin", "Organization/ops", "admin")
    committee = await world.caller("committee", "Organization/ops", "committee")
    await load_population(world.store, seed=36, children=20)
    base = "Measure/referrals/$evaluate-measure"
    for period in ("periodStart=2025-01-01&periodEnd=2025-01-30", "periodStart=2025-01&periodEnd=2025-06"):
        refused = await committee.get(f"{base}?{period}")
        assert refused.status_code == 403, refused.text
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == ["periodStart", "periodEnd"]
        assert (await admin.get(f"{base}?{period}")).status_code == 200
    for period in ("periodStart=2025-04-01&periodEnd=2025-06-30", "periodStart=2025&periodEnd=2025"):
        assert (await committee.get(f"{base}?{period}")).status_code == 200
    refusals = [
        e
        for e in await world.audit_events()
        if any(a.get("who", {}).get("display") == "committee" for a in e.get("agent", []))
        and e.get("outcome") != "0"
    ]
    assert len(refusals) >= 2


def test_published_periods_and_counts() -> None:
    assert published_period(date(2025, 10, 1), date(2025, 12, 31))
    assert published_period(date(2025, 1, 1), date(2025, 12, 31))
    assert not published_period(date(2025, 2, 1), date(2025, 4, 30))
    assert not published_period(date(2025, 4, 1), date(2025, 12, 31))
    assert not published_period(date(2025, 1, 1), date(2025, 3, 30))
    shown = [published_count(Cell(5, 5, key)) for key in range(500)]
    assert min(shown) == 5 and max(shown) == 7 and len(set(shown)) == 3
    assert {published_count(Cell(40, 40, key)) for key in range(500)} == {38, 39, 40, 41, 42}
    assert published_count(Cell(40, 40, 7)) == published_count(Cell(40, 40, 7))
    assert published_count(Cell(40, 40, None)) == 40  # no key: an unprotected evaluation
