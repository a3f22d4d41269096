"""``_total``: none is the cheap default, accurate is exact, estimate is exact when the count is small
and extrapolated (and said to be) when it is not."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.storage.sqlite import search_sql
from tests.search.conftest import SearchDb


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # Estimate above 10 matches, from a window of the newest 40 resources.
    monkeypatch.setattr(search_sql, "_ESTIMATE_CAP", 10)
    monkeypatch.setattr(search_sql, "_ESTIMATE_WINDOW", 40)


@pytest.fixture
def totals_db() -> SearchDb:
    db = SearchDb()
    for i in range(200):
        db.put({"resourceType": "Patient", "id": f"p{i}", "gender": "male" if i % 4 else "female"})
    return db


def test_none_gives_no_total_when_there_are_more_pages(totals_db: SearchDb) -> None:
    page = totals_db.page("Patient", "gender=male&_count=5")
    assert page.total is None and page.total_estimated is None


def test_accurate_is_exact(totals_db: SearchDb, small_limits: None) -> None:
    page = totals_db.page("Patient", "gender=male&_total=accurate&_count=5")
    assert page.total == 150 and not page.total_estimated


def test_estimate_small_count_is_exact(totals_db: SearchDb, small_limits: None) -> None:
    page = totals_db.page("Patient", "gender=female&_id=p0,p4,p8,p1&_total=estimate&_count=2")
    assert page.total == 3 and page.total_estimated is False


def test_estimate_large_count_is_an_estimate(totals_db: SearchDb, small_limits: None) -> None:
    page = totals_db.page("Patient", "gender=male&_total=estimate&_count=5")
    assert page.total_estimated is True
    # uniform data: the newest 40 patients hold 30 males, scaled over 200 patients
    assert page.total == 150
    female = totals_db.page("Patient", "gender=female&_total=estimate&_count=5")
    assert female.total_estimated is True and female.total == 50
    # through the resource-row path too (a :not condition)
    other = totals_db.page("Patient", "gender:not=female&_total=estimate&_count=5")
    assert other.total_estimated is True and other.total == 150


def test_estimate_never_below_what_was_counted(totals_db: SearchDb, small_limits: None) -> None:
    # all the males sit outside the newest-40 window: the capped count is the floor
    for i in range(200, 240):
        totals_db.put({"resourceType": "Patient", "id": f"p{i}", "gender": "other"})
    page = totals_db.page("Patient", "gender=female&_total=estimate&_count=5")
    assert page.total_estimated is True and page.total >= 11


async def test_bundle_says_which_total_it_is(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_sql, "_ESTIMATE_CAP", 3)
    monkeypatch.setattr(search_sql, "_ESTIMATE_WINDOW", 4)
    for i in range(8):
        patient = {"resourceType": "Patient", "id": f"e{i}", "gender": "male"}
        r = await client.put(f"/Patient/e{i}", json=patient)
        assert r.status_code in (200, 201), r.text

    async def outcome(params: dict[str, str]) -> tuple[int | None, list[str]]:
        r = await client.get("/Patient", params=params)
        assert r.status_code == 200, r.text
        bundle = r.json()
        notes = [
            issue["diagnostics"]
            for e in bundle.get("entry", [])
            if e["search"]["mode"] == "outcome"
            for issue in e["resource"]["issue"]
            if issue["severity"] == "information"
        ]
        return bundle.get("total"), notes

    total, notes = await outcome({"gender": "male", "_total": "estimate", "_count": "2"})
    assert total == 8 and any("is an estimate" in n for n in notes)
    total, notes = await outcome({"_id": "e1,e2", "_total": "estimate", "_count": "1"})
    assert total == 2 and any("is exact" in n for n in notes)
    total, notes = await outcome({"gender": "male", "_total": "accurate", "_count": "2"})
    assert total == 8 and notes == []
