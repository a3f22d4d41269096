"""Keyset paging: pages stay correct while others write between them."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from fhir_server.interactions.errors import FhirError
from fhir_server.search.result import SearchPage
from tests.search.conftest import SearchDb


def _fill(db: SearchDb, n: int) -> None:
    for i in range(n):
        db.put(
            {
                "resourceType": "Patient",
                "id": f"p{i:03d}",
                "birthDate": f"20{i % 20:02d}-01-01",
                "name": [{"family": f"Fam{i % 7}"}],
            }
        )


def _next(db: SearchDb, query: str, page: SearchPage, cursor: str | None) -> SearchPage:
    assert cursor is not None
    return db.page("Patient", f"{query}&{urlencode({'_cursor': cursor})}")


@pytest.mark.parametrize(
    "query",
    [
        "_count=7",
        "_count=7&_sort=-birthdate",
        "_count=7&_sort=family,-birthdate",
        "_count=7&_sort=-_lastUpdated",
    ],
)
def test_walk_all_pages_forward_and_back(query: str) -> None:
    db = SearchDb()
    _fill(db, 40)
    expected = db.ids("Patient", query.replace("_count=7", "_count=100"))
    pages = [db.page("Patient", query)]
    while pages[-1].next_cursor:
        pages.append(_next(db, query, pages[-1], pages[-1].next_cursor))
    assert [m.id for p in pages for m in p.matches] == expected
    assert len(pages) == 6
    # and back again from the last page
    back = [pages[-1]]
    while back[-1].prev_cursor:
        back.append(_next(db, query, back[-1], back[-1].prev_cursor))
    assert [m.id for p in reversed(back) for m in p.matches] == expected


def test_writes_between_pages_neither_skip_nor_repeat() -> None:
    db = SearchDb()
    _fill(db, 20)
    query = "_count=5&_sort=family"
    first = db.page("Patient", query)
    seen = [m.id for m in first.matches]
    # Others write: a resource sorting before the cursor, one after it, and a deletion of an unseen one.
    unseen = db.ids("Patient", "_count=100&_sort=family")[-1]
    db.put({"resourceType": "Patient", "id": "early", "name": [{"family": "Aaa"}]})
    db.put({"resourceType": "Patient", "id": "late", "name": [{"family": "Zzz"}]})
    db.delete("Patient", unseen)
    page = first
    while page.next_cursor:
        page = _next(db, query, page, page.next_cursor)
        seen.extend(m.id for m in page.matches)
    assert len(seen) == len(set(seen))  # nothing twice
    assert "late" in seen and "early" not in seen and unseen not in seen
    assert set(seen) | {"early"} == set(db.ids("Patient", "_count=100"))


def test_cursor_from_another_sort_is_rejected() -> None:
    db = SearchDb()
    _fill(db, 10)
    page = db.page("Patient", "_count=3&_sort=family")
    with pytest.raises(FhirError) as info:
        db.page("Patient", f"_count=3&{urlencode({'_cursor': page.next_cursor})}")
    assert info.value.status == 400
    with pytest.raises(FhirError):
        db.page("Patient", "_cursor=garbage!")
