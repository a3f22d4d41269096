"""Every shipped measure on a generated population, checked against counts made here with plain loops."""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_server import canonical
from fhir_server.analytics.growth import who_zscores
from fhir_server.analytics.measures.evaluate import MeasureResult, Subject
from fhir_server.analytics.measures.library import shipped_measures
from fhir_server.analytics.service import Analytics
from fhir_server.storage.sqlite.store import SqliteStore
from fhir_server.synthetic.config import DEFAULT_REFERENCE_DATE
from tests.analytics.population import load_population

TODAY = date.today()
# The generated population's own "today": its last year is the period measured.
START, END = DEFAULT_REFERENCE_DATE - timedelta(days=364), DEFAULT_REFERENCE_DATE
SUSPECTED = {"suspected-delay", "suspected-delay-refer", "delay"}
DOPA = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
BAND = canonical.structure_definition(canonical.EXT_DSPM_AGE_BAND)
MOPH = canonical.code_system(canonical.CS_MOPH_VACCINE)


def plus_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def during(day: date | None) -> bool:
    return day is not None and START <= day <= END


def day_of(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


class Population:
    """The generated resources, indexed the plain way."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.children = [r for r in resources if r["resourceType"] == "Patient"]
        self.by_child: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in resources:
            ref = (r.get("subject") or r.get("patient") or r.get("for") or {}).get("reference", "")
            if ref.startswith("Patient/"):
                self.by_child[ref.split("/")[1]][r["resourceType"]].append(r)
        self.tasks = [r for r in resources if r["resourceType"] == "Task"]

    def district(self, child: dict[str, Any]) -> str:
        for ext in child["address"][0]["extension"]:
            if ext["url"] == DOPA:
                return next(e["valueCoding"]["code"] for e in ext["extension"] if e["url"] == "district")
        raise AssertionError("no district")

    def screenings(self, cid: str) -> list[dict[str, Any]]:
        return [
            o
            for o in self.by_child[cid]["Observation"]
            if canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING)
            in o["meta"].get("profile", [])
        ]


def band(o: dict[str, Any]) -> str:
    return next(e["valueCoding"]["code"] for e in o["extension"] if e["url"] == BAND)


def result(o: dict[str, Any]) -> str:
    return o["valueCodeableConcept"]["coding"][0]["code"]


@pytest.fixture(scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Population, Analytics]]:
    path: Path = tmp_path_factory.mktemp("measures")
    store = SqliteStore(f"sqlite:///{path / 'store.sqlite'}")
    await store.open()
    resources = await load_population(store, seed=20, children=160)
    analytics = Analytics(store)
    assert await analytics.ready(timeout=300)
    assert analytics.error is None
    yield Population(resources), analytics
    await analytics.stop()
    await store.close()


async def run(analytics: Analytics, measure_id: str, subject: Subject | None = None) -> MeasureResult:
    measure = next(m for m in shipped_measures() if m["id"] == measure_id)
    return await analytics.evaluate(analytics.plan(measure), START, END, subject)


def counts(result: MeasureResult, group: int) -> dict[str, int]:
    return {code: cell.count for code, cell in result.groups[group].populations.items()}


async def test_dspm_coverage_overall_and_by_district(world: tuple[Population, Analytics]) -> None:
    pop, analytics = world
    result = await run(analytics, "dspm-coverage")
    for index, months in enumerate((9, 18, 30, 42)):
        reached = [c for c in pop.children if during(plus_months(date.fromisoformat(c["birthDate"]), months))]
        screened = [c for c in reached if any(band(o) == str(months) for o in pop.screenings(c["id"]))]
        assert counts(result, index) == {
            "initial-population": len(reached),
            "denominator": len(reached),
            "numerator": len(screened),
        }
        by_district: dict[str, int] = defaultdict(int)
        for c in reached:
            by_district[pop.district(c)] += 1
        strata = {
            s.value: s.populations["denominator"].count for s in result.groups[index].strata["district"]
        }
        assert {k: v for k, v in strata.items() if v} == dict(by_district)
    assert counts(result, 0)["initial-population"] > 0


async def test_suspected_delay_and_follow_up(world: tuple[Population, Analytics]) -> None:
    pop, analytics = world
    result = await run(analytics, "dspm-suspected-delay")
    screened, suspected, followed = 0, 0, 0
    for child in pop.children:
        mine = pop.screenings(child["id"])
        in_period = [o for o in mine if during(day_of(o["effectiveDateTime"]))]
        if not in_period:
            continue
        screened += 1
        flagged = [o for o in in_period if result_of(o) in SUSPECTED]
        if not flagged:
            continue
        suspected += 1
        tasks = [t for t in pop.tasks if t["for"]["reference"] == f"Patient/{child['id']}"]
        for o in flagged:
            on = day_of(o["effectiveDateTime"])
            assert on is not None
            later = any(on < day_of(x["effectiveDateTime"]) <= on + timedelta(days=30) for x in mine)  # type: ignore[operator]
            referred = any(on <= day_of(t["authoredOn"]) <= on + timedelta(days=30) for t in tasks)  # type: ignore[operator]
            if later or referred:
                followed += 1
                break
    assert counts(result, 0) == {
        "initial-population": screened,
        "denominator": screened,
        "numerator": suspected,
    }
    assert counts(result, 1) == {
        "initial-population": suspected,
        "denominator": suspected,
        "numerator": followed,
    }
    assert suspected > 0


def result_of(o: dict[str, Any]) -> str:
    return result(o)


async def test_epi_coverage(world: tuple[Population, Analytics]) -> None:
    pop, analytics = world
    measure = next(m for m in shipped_measures() if m["id"] == "epi-coverage")
    result = await run(analytics, "epi-coverage")
    for index, group in enumerate(measure["group"]):
        months = int(group["code"]["coding"][0]["code"].removeprefix("epi-").removesuffix("m"))
        due = [
            c.strip(" '")
            for c in group["population"][2]["criteria"]["expression"].split("(")[1].split(")")[0].split(",")
        ]
        reached = [c for c in pop.children if during(plus_months(date.fromisoformat(c["birthDate"]), months))]
        complete = 0
        for c in reached:
            by_age = plus_months(date.fromisoformat(c["birthDate"]), months)
            given = {
                coding["code"]
                for i in pop.by_child[c["id"]]["Immunization"]
                if i["status"] == "completed" and day_of(i["occurrenceDateTime"]) <= by_age  # type: ignore[operator]
                for coding in i["vaccineCode"]["coding"]
                if coding["system"] == MOPH
            }
            complete += set(due) <= given
        assert counts(result, index) == {
            "initial-population": len(reached),
            "denominator": len(reached),
            "numerator": complete,
        }


async def test_referrals(world: tuple[Population, Analytics]) -> None:
    pop, analytics = world
    result = await run(analytics, "referrals")
    opened = [t for t in pop.tasks if during(day_of(t["authoredOn"]))]
    due = [t for t in pop.tasks if during(day_of(t["restriction"]["period"]["end"]))]
    live = [t for t in due if t["status"] not in ("cancelled", "rejected", "entered-in-error")]

    def on_time(t: dict[str, Any]) -> bool:
        end = (t.get("executionPeriod") or {}).get("end")
        return t["status"] == "completed" and day_of(end) <= day_of(t["restriction"]["period"]["end"])  # type: ignore[operator]

    late = [t for t in live if not on_time(t) and day_of(t["restriction"]["period"]["end"]) < TODAY]  # type: ignore[operator]
    assert counts(result, 0) == {"initial-population": len(opened)}
    assert result.groups[0].score == len(opened)
    assert counts(result, 1) == {
        "initial-population": len(due),
        "denominator": len(live),
        "numerator": sum(map(on_time, live)),
    }
    assert counts(result, 2) == {
        "initial-population": len(due),
        "denominator": len(live),
        "numerator": len(late),
    }
    assert opened


async def test_nutrition_status(world: tuple[Population, Analytics]) -> None:
    pop, analytics = world
    result = await run(analytics, "nutrition-status")
    measured, stunted, wasted = 0, 0, 0
    for child in pop.children:
        born = date.fromisoformat(child["birthDate"])
        visits: dict[date, dict[str, float]] = defaultdict(dict)
        for o in pop.by_child[child["id"]]["Observation"]:
            code = (o["code"].get("coding") or [{}])[0].get("code")
            on = day_of(o.get("effectiveDateTime"))
            if code in ("29463-7", "8302-2", "8306-3") and on is not None:
                visits[on]["w" if code == "29463-7" else "h"] = o["valueQuantity"]["value"]
                if code == "8306-3":
                    visits[on]["lying"] = 1
        scored = []
        for on, v in sorted(visits.items()):
            if "w" not in v or not during(on) or not 0 <= (on - born).days <= 1856:
                continue
            z = who_zscores(child["gender"], born, on, v["w"], v.get("h"), "lying" in v if "h" in v else None)
            if z is not None:
                scored.append(z)
        if not scored:
            continue
        measured += 1
        latest = scored[-1]
        stunted += latest.lhfa is not None and latest.lhfa < -2
        wasted += latest.wflh is not None and latest.wflh < -2
    assert counts(result, 0)["initial-population"] == measured > 0
    assert counts(result, 1)["numerator"] == stunted
    assert counts(result, 2)["numerator"] == wasted


async def test_subject_district_matches_the_district_stratum(world: tuple[Population, Analytics]) -> None:
    _, analytics = world
    overall = await run(analytics, "dspm-coverage")
    stratum = max(overall.groups[3].strata["district"], key=lambda s: s.populations["denominator"].count)
    assert stratum.value is not None
    one = await run(analytics, "dspm-coverage", Subject(district=stratum.value))
    assert one.groups[3].populations == stratum.populations


async def test_help_requests_by_type_and_days_to_first_action(world: tuple[Population, Analytics]) -> None:
    """The generated population has no requests for help: these are written here, by hand."""
    from statistics import median

    from fhir_server.interactions.writes import now_instant, stamp
    from fhir_server.search.extract import extract_index
    from fhir_server.storage.base import StoredResource

    pop, analytics = world
    task_code = canonical.code_system("th-task-code")
    kinds = ("food", "shelter", "violence")
    written = []
    for i, child in enumerate(pop.children[:14]):
        received = START + timedelta(days=20 * i)
        acted = received + timedelta(days=i % 5) if i % 4 else None
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": f"help-{i}",
            "status": "in-progress" if acted else "requested",
            "intent": "order",
            "code": {"coding": [{"system": task_code, "code": "help-request-triage"}]},
            "for": {"reference": f"Patient/{child['id']}"},
            "reasonCode": {"coding": [{"code": kinds[i % 3]}]},
            "authoredOn": f"{received.isoformat()}T09:00:00+07:00",
        }
        if i == 13:  # received before the period: not counted
            task["authoredOn"] = f"{(START - timedelta(days=3)).isoformat()}T09:00:00+07:00"
        if acted:
            task["executionPeriod"] = {"start": f"{acted.isoformat()}T10:00:00+07:00"}
        written.append(task)
    when = now_instant()
    await analytics.store.import_versions(
        [
            (
                StoredResource("Task", t["id"], 1, when, "PUT", stamp(None, t, "Task", t["id"], 1, when)),
                extract_index(t),
            )
            for t in written
        ]
    )
    assert await analytics.refresh(figures_now=True)
    result = await run(analytics, "help-requests")
    counted = [t for t in written if during(day_of(t["authoredOn"]))]
    assert len(counted) == 13
    assert counts(result, 0) == {"initial-population": 13}
    strata = result.groups[0].strata["request-type"]
    by_type = {s.value: s.populations["initial-population"].count for s in strata}
    expected: dict[str, int] = defaultdict(int)
    for t in counted:
        expected[t["reasonCode"]["coding"][0]["code"]] += 1
    assert by_type == dict(expected)
    days = [
        (day_of(t["executionPeriod"]["start"]) - day_of(t["authoredOn"])).days  # type: ignore[operator]
        for t in counted
        if "executionPeriod" in t
    ]
    assert result.groups[1].populations["measure-population"].count == len(days)
    assert result.groups[1].score == pytest.approx(median(days))
