"""The SQL a search compiles to reads covering indexes: counts and token matches never touch the
resource table, sort keys come from the ``(rid, pkey, value)`` indexes, and only one page of
resource rows is read whatever the match size. Checked on SQLite's own query plans, not timings.
"""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_server.search.query import parse_search
from fhir_server.storage.sqlite.search_sql import run_search
from tests.search.conftest import BASE, SearchDb


class _Spy:
    """A connection stand-in that records every statement run_search sends."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, list[Any]]] = []

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, list(args)))
        return self.conn.execute(sql, args)


def _plans(db: SearchDb, rtype: str, query: str) -> list[tuple[str, list[str]]]:
    q = parse_search(rtype, parse_qsl(query), base_url=BASE, strict=True, default_count=5, max_count=50)
    spy = _Spy(db.conn)
    run_search(spy, q)  # type: ignore[arg-type]
    return [
        (sql, [row[3] for row in db.conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)])
        for sql, args in spy.statements
    ]


@pytest.fixture(scope="module")
def plandb() -> SearchDb:
    db = SearchDb()
    for i in range(60):
        db.put({"resourceType": "Patient", "id": f"p{i}", "gender": "male" if i % 2 else "female",
                "birthDate": f"20{10 + i % 10}-01-{1 + i % 28:02d}", "name": [{"family": f"Fam{i % 7}"}]})
        db.put({
            "resourceType": "Observation", "id": f"o{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/p{i}"},
            "effectiveDateTime": f"2020-{1 + i % 12:02d}-01",
            "valueQuantity": {"value": i, "system": "http://unitsofmeasure.org", "code": "kg"},
        })
    return db


def test_count_reads_only_the_token_index(plandb: SearchDb) -> None:
    [(sql, plan)] = _plans(plandb, "Observation", "code=http://loinc.org|29463-7&_summary=count")
    assert "resource" not in sql.split("FROM", 1)[1]
    assert any("COVERING INDEX sp_token_v" in step for step in plan)
    assert not any(step.startswith("SCAN") and "subquery" not in step for step in plan), plan


def test_token_page_is_driven_by_the_covering_index(plandb: SearchDb) -> None:
    [(_, plan)] = _plans(plandb, "Observation", "code=http://loinc.org|29463-7")
    assert any("COVERING INDEX sp_token_v" in step for step in plan), plan
    # the resource table is only probed by rowid for the page's rows, never scanned
    assert not any(step.startswith("SCAN r") or "SCAN resource" in step for step in plan), plan


def test_sort_keys_come_from_covering_indexes(plandb: SearchDb) -> None:
    [(sql, plan)] = _plans(plandb, "Observation", "code=http://loinc.org|29463-7&_sort=-date,value-quantity")
    assert any("COVERING INDEX sp_date_rk" in step for step in plan), plan
    assert any("COVERING INDEX sp_quantity_rk" in step for step in plan), plan
    # one statement, no correlated per-row lookups of the sort key
    assert "CORRELATED" not in " ".join(plan)
    # bodies are read after the limit: the only resource access is the page join
    assert sql.count("resource") == 1


def test_sorted_pages_stay_correct(plandb: SearchDb) -> None:
    everything = plandb.ids("Patient", "_sort=-birthdate,family&_count=100")
    births = [int(i[1:]) % 10 for i in everything]
    assert births == sorted(births, reverse=True)
    walked: list[str] = []
    page = plandb.page("Patient", "_sort=-birthdate,family&_count=7")
    walked.extend(m.id for m in page.matches)
    while page.next_cursor:
        page = plandb.page("Patient", f"_sort=-birthdate,family&_count=7&_cursor={page.next_cursor}")
        walked.extend(m.id for m in page.matches)
    assert walked == everything and len(walked) == 60


def test_total_with_conditions_that_need_the_resource_row(plandb: SearchDb) -> None:
    # :not and _id cannot be answered from one index: the live-resource index is the base instead
    assert plandb.page("Patient", "gender:not=male&_summary=count").total == 30
    assert plandb.page("Patient", "_id=p1,p2,p3&gender=male&_summary=count").total == 2
    plandb.delete("Patient", "p59")
    try:
        assert plandb.page("Patient", "gender=male&_summary=count").total == 29
        assert plandb.page("Patient", "_summary=count").total == 59
    finally:
        plandb.put({"resourceType": "Patient", "id": "p59", "gender": "male", "birthDate": "2019-01-04",
                    "name": [{"family": "Fam3"}]})


def test_descending_last_updated_is_read_in_index_order(plandb: SearchDb) -> None:
    [(_, plan)] = _plans(plandb, "Patient", "_sort=-_lastUpdated")
    assert any("resource_type_updated" in step for step in plan), plan
    assert not any("RIGHT PART OF ORDER BY" in step for step in plan), plan


def test_ties_page_forward_and_back_and_past_an_emptied_page() -> None:
    db = SearchDb()
    stamp = "2024-01-01T00:00:00.000Z"
    for i in range(10):
        db.put({"resourceType": "Patient", "id": f"t{i}"}, last_updated=stamp)
    query = "_sort=-_lastUpdated&_count=4"
    pages = [db.page("Patient", query)]
    while pages[-1].next_cursor:
        pages.append(db.page("Patient", f"{query}&_cursor={pages[-1].next_cursor}"))
    forward = [m.id for p in pages for m in p.matches]
    assert forward == [f"t{i}" for i in range(9, -1, -1)]
    back = [pages[-1]]
    while back[-1].prev_cursor:
        back.append(db.page("Patient", f"{query}&_cursor={back[-1].prev_cursor}"))
    assert [[m.id for m in p.matches] for p in reversed(back)] == [[m.id for m in p.matches] for p in pages]
    # everything after the first page goes away: the next page is empty, and its previous link
    # leads back to exactly the first page
    for i in range(6):
        db.delete("Patient", f"t{i}")
    empty = db.page("Patient", f"{query}&_cursor={pages[0].next_cursor}")
    assert empty.matches == [] and empty.prev_cursor
    again = db.page("Patient", f"{query}&_cursor={empty.prev_cursor}")
    assert [m.id for m in again.matches] == ["t9", "t8", "t7", "t6"]
