"""The Store contract, written once and run against every backend."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fhir_server.search.extract import extract_index
from fhir_server.storage.base import HistoryQuery, Store, StoredResource
from fhir_server.storage.outbox import MARK_SPACING


def version(type_: str, id_: str, n: int, when: str, method: str = "PUT", **fields: object) -> StoredResource:
    body = b"" if method == "DELETE" else orjson.dumps({"resourceType": type_, "id": id_, **fields})
    return StoredResource(type_, id_, n, when, method, body)  # type: ignore[arg-type]


async def put(store: Store, resource: StoredResource) -> None:
    async with store.transaction() as tx:
        if resource.deleted:
            await tx.delete(resource)
        else:
            await tx.put(resource, extract_index(orjson.loads(resource.body)))


async def test_put_read_vread(any_store: Store) -> None:
    await put(any_store, version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST", gender="male"))
    await put(any_store, version("Patient", "a", 2, "2026-01-02T00:00:00.000Z", gender="female"))
    current = await any_store.read("Patient", "a")
    assert current is not None and current.version == 2
    assert orjson.loads(current.body)["gender"] == "female"
    first = await any_store.vread("Patient", "a", 1)
    assert first is not None and first.method == "POST"
    assert await any_store.read("Patient", "b") is None
    assert await any_store.vread("Patient", "a", 3) is None


async def test_body_bytes_are_kept_exactly(any_store: Store) -> None:
    body = b'{"resourceType":"Basic","id":"x","extension":[{"url":"u","valueDecimal":1.00}]}'
    async with any_store.transaction() as tx:
        await tx.put(StoredResource("Basic", "x", 1, "2026-01-01T00:00:00.000Z", "POST", body), None)
    stored = await any_store.read("Basic", "x")
    assert stored is not None and stored.body == body


async def test_delete_leaves_a_tombstone(any_store: Store) -> None:
    await put(any_store, version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST"))
    await put(any_store, version("Patient", "a", 2, "2026-01-02T00:00:00.000Z", "DELETE"))
    current = await any_store.read("Patient", "a")
    assert current is not None and current.deleted and current.body == b""
    assert [r async for r in any_store.iterate("Patient")] == []


async def test_transaction_rolls_back_on_error(any_store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with any_store.transaction() as tx:
            await tx.put(version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST"), None)
            assert await tx.read("Patient", "a") is not None  # visible inside the transaction
            raise RuntimeError("boom")
    assert await any_store.read("Patient", "a") is None
    page = await any_store.history(HistoryQuery())
    assert page.entries == []


async def test_transactions_are_serialised(any_store: Store) -> None:
    await put(any_store, version("Basic", "n", 1, "2026-01-01T00:00:00.000Z", "POST", count=0))

    async def bump() -> None:
        async with any_store.transaction() as tx:
            current = await tx.read("Basic", "n")
            assert current is not None
            value = orjson.loads(current.body)["count"]
            await asyncio.sleep(0)
            bumped = version("Basic", "n", current.version + 1, "2026-01-02T00:00:00.000Z", count=value + 1)
            await tx.put(bumped, None)

    await asyncio.gather(*(bump() for _ in range(20)))
    final = await any_store.read("Basic", "n")
    assert final is not None and orjson.loads(final.body)["count"] == 20 and final.version == 21


async def test_history_levels_filters_and_paging(any_store: Store) -> None:
    await put(any_store, version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST"))
    await put(any_store, version("Observation", "o", 1, "2026-01-02T00:00:00.000Z", "POST"))
    await put(any_store, version("Patient", "a", 2, "2026-01-03T00:00:00.000Z"))
    await put(any_store, version("Patient", "b", 1, "2026-01-04T00:00:00.000Z", "POST"))
    system = await any_store.history(HistoryQuery(count=10))
    assert [(r.id, r.version) for r in system.entries] == [("b", 1), ("a", 2), ("o", 1), ("a", 1)]
    typed = await any_store.history(HistoryQuery(resource_type="Patient", count=2))
    assert [(r.id, r.version) for r in typed.entries] == [("b", 1), ("a", 2)]
    assert typed.next_before_seq is not None
    older = HistoryQuery(resource_type="Patient", count=2, before_seq=typed.next_before_seq)
    rest = await any_store.history(older)
    assert [(r.id, r.version) for r in rest.entries] == [("a", 1)]
    assert rest.next_before_seq is None
    instance = await any_store.history(HistoryQuery(resource_type="Patient", id="a"))
    assert instance.total == 2
    since = await any_store.history(HistoryQuery(since="2026-01-03T00:00:00.000Z"))
    assert [(r.id, r.version) for r in since.entries] == [("b", 1), ("a", 2)]
    at = await any_store.history(HistoryQuery(resource_type="Patient", id="a", at="2026-01-02T12:00:00.000Z"))
    assert [(r.id, r.version) for r in at.entries] == [("a", 1)]


async def test_iterate_streams_current_resources(any_store: Store) -> None:
    for n in range(1200):
        async with any_store.transaction() as tx:
            await tx.put(version("Basic", f"b{n}", 1, "2026-01-01T00:00:00.000Z", "POST"), None)
    await put(any_store, version("Patient", "p", 1, "2026-01-01T00:00:00.000Z", "POST"))
    basics = [r.id async for r in any_store.iterate("Basic")]
    assert len(basics) == 1200 and len(set(basics)) == 1200
    everything = [r async for r in any_store.iterate()]
    assert len(everything) == 1201
    history = [r async for r in any_store.iterate_history()]
    assert len(history) == 1201


async def test_whole_type_bodies_in_batches(any_store: Store) -> None:
    """What views and the analytics warehouse read (``views.run.body_batches``): every current body of
    one type once, in rid order, deleted ones left out; a reader that stops early leaves the store fine."""
    from fhir_server.analytics.views.run import body_batches

    for n in range(25):
        await put(any_store, version("Basic", f"b{n:02}", 1, "2026-01-01T00:00:00.000Z", "POST"))
    await put(any_store, version("Basic", "b03", 2, "2026-01-02T00:00:00.000Z", "DELETE"))
    await put(any_store, version("Patient", "p", 1, "2026-01-01T00:00:00.000Z", "POST"))
    expected = [r.body async for r in any_store.iterate("Basic")]
    assert len(expected) == 24
    assert [b for batch in [x async for x in body_batches(any_store, "Basic")] for b in batch] == expected
    if hasattr(any_store, "iterate_bodies"):  # the read-ahead, across several batches
        batches = [batch async for batch in any_store.iterate_bodies("Basic", size=7)]
        assert [len(b) for b in batches] == [7, 7, 7, 3]
        assert [b for batch in batches for b in batch] == expected
        async for _ in any_store.iterate_bodies("Basic", size=7):
            break
        assert (await any_store.read("Basic", "b24")) is not None


async def test_change_feed(any_store: Store) -> None:
    assert await any_store.last_change() == 0
    assert await any_store.changes(0) == []
    await put(any_store, version("Patient", "a", 1, "2025-01-01T00:00:00.000Z", "POST"))
    await put(any_store, version("Patient", "b", 1, "2025-01-01T00:00:01.000Z", "POST"))
    start = await any_store.last_change()
    await put(any_store, version("Patient", "a", 2, "2025-01-01T00:00:02.000Z", gender="male"))
    await put(any_store, version("Patient", "b", 2, "2025-01-01T00:00:03.000Z", "DELETE"))
    feed = await any_store.changes(start)
    assert [(r.id, r.version, r.deleted) for _, r in feed] == [("a", 2, False), ("b", 2, True)]
    numbers = [n for n, _ in feed]
    assert numbers == sorted(numbers) and numbers[0] > start and numbers[-1] == await any_store.last_change()
    first = await any_store.changes(0, limit=3)
    assert [(r.id, r.version) for _, r in first] == [("a", 1), ("b", 1), ("a", 2)]
    assert await any_store.changes(numbers[-1]) == []


async def test_key_value_area(any_store: Store) -> None:
    assert await any_store.kv_get("clients", "a") is None
    await any_store.kv_put("clients", "a", {"role": "school"})
    await any_store.kv_put("clients", "b", {"role": "hospital"})
    await any_store.kv_put("clients", "a", {"role": "childcare"})
    assert await any_store.kv_get("clients", "a") == {"role": "childcare"}
    assert await any_store.kv_list("clients") == [("a", {"role": "childcare"}), ("b", {"role": "hospital"})]
    assert await any_store.kv_delete("clients", "a") is True
    assert await any_store.kv_delete("clients", "a") is False
    assert await any_store.kv_list("other") == []


def _query(resource_type: str, text: str):  # type: ignore[no-untyped-def]
    from urllib.parse import parse_qsl

    from fhir_server.search.query import parse_search

    return parse_search(resource_type, parse_qsl(text, keep_blank_values=True), base_url="http://x/fhir",
                        strict=True, default_count=50, max_count=100)


async def _ids(store: Store, resource_type: str, text: str) -> list[str]:
    page = await store.search(_query(resource_type, text))
    return [m.id for m in page.matches]


async def test_reindex_replaces_rows_of_the_indexed_version_only(any_store: Store) -> None:
    await put(any_store, version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST", gender="female"))
    stale = await any_store.read("Patient", "a")
    assert stale is not None
    await any_store.reindex(stale, extract_index({"resourceType": "Patient", "id": "a", "gender": "male"}))
    assert await _ids(any_store, "Patient", "gender=male") == ["a"]
    assert await _ids(any_store, "Patient", "gender=female") == []
    await put(any_store, version("Patient", "a", 2, "2026-01-02T00:00:00.000Z", gender="other"))
    await any_store.reindex(stale, extract_index({"resourceType": "Patient", "id": "a", "gender": "male"}))
    assert await _ids(any_store, "Patient", "gender=other") == ["a"]  # a newer write indexed itself


async def test_search_in_a_transaction_sees_its_own_writes(any_store: Store) -> None:
    async with any_store.transaction() as tx:
        resource = version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST", gender="female")
        await tx.put(resource, extract_index(orjson.loads(resource.body)))
        page = await tx.search(_query("Patient", "gender=female"))
        assert [m.id for m in page.matches] == ["a"]
    assert await _ids(any_store, "Patient", "gender=female") == ["a"]


async def test_import_versions_writes_history_verbatim(any_store: Store) -> None:
    versions = [
        version("Patient", "a", 1, "2025-01-01T00:00:00.000Z", "POST", gender="female"),
        version("Patient", "b", 1, "2025-01-02T00:00:00.000Z", "POST", gender="male"),
        version("Patient", "a", 2, "2025-01-03T00:00:00.000Z", gender="other"),
        version("Patient", "b", 2, "2025-01-04T00:00:00.000Z", "DELETE"),
    ]
    await any_store.import_versions([(v, None if v.deleted else extract_index(orjson.loads(v.body)))
                                     for v in versions])
    assert [r async for r in any_store.iterate_history()] == versions
    current = await any_store.read("Patient", "a")
    assert current == versions[2]
    gone = await any_store.read("Patient", "b")
    assert gone is not None and gone.deleted and gone.version == 2
    assert await any_store.vread("Patient", "a", 1) == versions[0]
    assert await _ids(any_store, "Patient", "gender=other") == ["a"]
    assert await _ids(any_store, "Patient", "gender=female") == []
    assert await _ids(any_store, "Patient", "gender=male") == []
    page = await any_store.history(HistoryQuery(resource_type="Patient", count=10))
    assert [(r.id, r.version) for r in page.entries] == [("b", 2), ("a", 2), ("b", 1), ("a", 1)]
    # a version older than the current one joins the history without replacing the current one
    await any_store.import_versions([(version("Basic", "x", 2, "2025-02-02T00:00:00.000Z"), None),
                                     (version("Basic", "x", 1, "2025-02-01T00:00:00.000Z", "POST"), None)])
    latest = await any_store.read("Basic", "x")
    assert latest is not None and latest.version == 2
    assert (await any_store.vread("Basic", "x", 1)) is not None


@pytest.mark.parametrize(
    "hostile",
    ['{"$where": "1 == 1"}', "$ne", "$gt", '{"$ne": null}', "$where", ".*", "^", "a.b", "$", "x' OR 1=1 --"],
)
async def test_query_values_are_data_never_operators(any_store: Store, hostile: str) -> None:
    from urllib.parse import urlencode

    await put(any_store, version("Patient", "a", 1, "2026-01-01T00:00:00.000Z", "POST", gender="female",
                                 name=[{"family": "Smith"}], identifier=[{"system": "s", "value": "v"}]))
    await put(any_store, version("Patient", "b", 1, "2026-01-01T00:00:00.000Z", "POST",
                                 name=[{"family": hostile}], identifier=[{"system": "s", "value": hostile}]))
    for name in ("gender", "name:exact", "identifier", "_id", "organization"):
        expected = ["b"] if name in ("name:exact", "identifier") else []
        assert await _ids(any_store, "Patient", urlencode({name: hostile})) == expected, name
    assert await _ids(any_store, "Patient", urlencode({"name:contains": hostile})) == ["b"]
    assert await _ids(any_store, "Patient", urlencode({"identifier": f"s|{hostile}"})) == ["b"]
    await any_store.kv_put("ns", hostile, {"$set": {"a.b": hostile}})
    assert await any_store.kv_get("ns", hostile) == {"$set": {"a.b": hostile}}


async def test_key_value_compare_and_set(any_store: Store) -> None:
    # absent -> present only when expected is None
    assert await any_store.kv_compare_and_set("jobs", "j", None, {"state": "queued", "n": 1}) is True
    assert await any_store.kv_compare_and_set("jobs", "j", None, {"state": "other"}) is False
    # equality is by JSON value, not key order
    assert await any_store.kv_compare_and_set("jobs", "j", {"n": 1, "state": "queued"}, {"state": "running"})
    assert await any_store.kv_get("jobs", "j") == {"state": "running"}
    assert await any_store.kv_compare_and_set("jobs", "j", {"state": "queued"}, {"state": "x"}) is False
    assert await any_store.kv_get("jobs", "j") == {"state": "running"}
    # delete when unchanged
    assert await any_store.kv_compare_and_set("jobs", "j", {"state": "running"}, None) is True
    assert await any_store.kv_get("jobs", "j") is None
    assert await any_store.kv_compare_and_set("jobs", "j", None, None) is True


async def test_compare_and_set_lets_exactly_one_claimer_win(any_store: Store) -> None:
    await any_store.kv_put("jobs", "j", {"state": "queued"})

    async def claim(n: int) -> bool:
        claimed = {"state": "running", "by": n}
        return await any_store.kv_compare_and_set("jobs", "j", {"state": "queued"}, claimed)

    results = await asyncio.gather(*(claim(n) for n in range(10)))
    assert sum(results) == 1
    winner = results.index(True)
    assert await any_store.kv_get("jobs", "j") == {"state": "running", "by": winner}


async def test_scan_is_bounded_by_count_and_bytes_and_resumes_after_a_position(any_store: Store) -> None:
    from fhir_server.search.query import SearchQuery

    big = "x" * 200_000
    for n in range(30):
        fields = {"text": {"status": "generated", "div": big}} if n % 10 == 3 else {}
        await put(any_store, version("Basic", f"b{n:02d}", 1, "2026-01-01T00:00:00.000Z", "POST", **fields))
    await put(any_store, version("Patient", "p", 1, "2026-01-01T00:00:00.000Z", "POST"))
    await put(any_store, version("Basic", "b05", 2, "2026-01-02T00:00:00.000Z", "DELETE"))
    seen: list[str] = []
    after, pages = 0, 0
    while True:
        page = await any_store.scan(SearchQuery(resource_types=("Basic",)), after, limit=7, max_bytes=100_000)
        assert len(page.resources) <= 7
        # a page stops at the resource that crosses the byte budget
        sizes = [len(r.body) for r in page.resources]
        assert sum(sizes[:-1]) < 100_000
        seen += [r.id for r in page.resources]
        pages += 1
        if page.last is None:
            break
        after = page.last
    assert seen == [f"b{n:02d}" for n in range(30) if n != 5]  # storage order, live resources only
    assert pages >= 6  # three 200 kB bodies each end a page early


async def test_scan_honours_conditions_access_and_cohorts(any_store: Store) -> None:
    from fhir_server.search.access import Access, Grant
    from fhir_server.search.query import InCompartments, SearchQuery
    from fhir_server.security.access import patient_links

    for child in ("c1", "c2", "c3"):
        await put(any_store, version("Patient", child, 1, "2026-01-01T00:00:00.000Z", "POST"))
        for n in range(2):
            await put(
                any_store,
                version("Observation", f"{child}-{n}", 1, "2026-01-01T00:00:00.000Z", "POST",
                        status="final", code={"text": "w"}, subject={"reference": f"Patient/{child}"}),
            )
    await put(any_store, version("Observation", "loose", 1, "2026-01-01T00:00:00.000Z", "POST",
                                 status="final", code={"text": "w"}))
    keys = patient_links()["Observation"]

    async def ids(query: SearchQuery) -> list[str]:
        return [r.id for r in (await any_store.scan(query, 0, limit=100)).resources]

    cohort = InCompartments("Patient", ("c1", "c3"), keys)
    assert await ids(SearchQuery(("Observation",), (cohort,))) == ["c1-0", "c1-1", "c3-0", "c3-1"]
    anyone = InCompartments("Patient", None, keys)
    assert len(await ids(SearchQuery(("Observation",), (anyone,)))) == 6
    own = InCompartments("Patient", ("c2", "zz"), is_self=True)
    assert await ids(SearchQuery(("Patient",), (own,))) == ["c2"]
    access = Access(types=frozenset({"Observation"}), grants=(Grant("Observation", keys, frozenset({"c3"})),))
    restricted = SearchQuery(("Observation",), (cohort,), access=access)
    assert await ids(restricted) == ["c3-0", "c3-1"]


async def test_scan_with_large_sets_of_children(any_store: Store) -> None:
    """Thousands of consented children or cohort members."""
    from fhir_server.search.access import Access, Grant
    from fhir_server.search.query import InCompartments, SearchQuery
    from fhir_server.security.access import patient_links

    for child in ("c1", "c2", "c3"):
        await put(any_store, version("Patient", child, 1, "2026-01-01T00:00:00.000Z", "POST"))
        await put(
            any_store,
            version(
                "Observation",
                f"{child}-o",
                1,
                "2026-01-01T00:00:00.000Z",
                "POST",
                status="final",
                code={"text": "w"},
                subject={"reference": f"Patient/{child}"},
            ),
        )
    many = tuple(f"x{n}" for n in range(3000))
    keys = patient_links()["Observation"]
    cohort = InCompartments("Patient", (*many, "c1", "c3"), keys)
    consented = Access(
        types=frozenset({"Observation", "Patient"}),
        grants=(
            Grant("Observation", keys, frozenset((*many, "c2", "c3"))),
            Grant("Patient", (), frozenset((*many, "c2"))),
        ),
    )

    async def ids(query: SearchQuery) -> list[str]:
        return [r.id for r in (await any_store.scan(query, 0, limit=100)).resources]

    assert await ids(SearchQuery(("Observation",), (cohort,))) == ["c1-o", "c3-o"]
    assert await ids(SearchQuery(("Observation",), (cohort,), access=consented)) == ["c3-o"]
    assert await ids(SearchQuery(("Patient",), (), access=consented)) == ["c2"]
    own = InCompartments("Patient", (*many, "c2"), is_self=True)
    assert await ids(SearchQuery(("Patient",), (own,))) == ["c2"]


# --- the outbox: events recorded with the write that caused them ---------------------------------


async def test_outbox_events_commit_with_their_transaction(any_store: Store) -> None:
    async with any_store.transaction() as tx:
        await tx.put(version("Basic", "e", 1, "2026-01-01T00:00:00.000Z", "POST"), None)
        await tx.outbox_put("sub/a", {"focus": "Basic/e", "version": 1})
        await tx.outbox_put("sub/b", {"focus": "Basic/e"})
        await tx.outbox_put("sub/a", {"focus": "Basic/e", "version": 1, "again": True})
    with pytest.raises(RuntimeError):
        async with any_store.transaction() as tx:
            await tx.put(version("Basic", "f", 1, "2026-01-01T00:00:00.000Z", "POST"), None)
            await tx.outbox_put("sub/a", {"focus": "Basic/f"})
            raise RuntimeError("the write fails: its event must not exist")
    async with any_store.transaction() as tx:
        await tx.outbox_put("sub/a", {"focus": "Basic/g"})
    events = await any_store.outbox_read("sub/a")
    expected = [(1, "Basic/e"), (2, "Basic/e"), (3, "Basic/g")]
    assert [(e.number, e.payload["focus"]) for e in events] == expected
    assert events[0].recorded.endswith("Z") and events[0].seq < events[1].seq < events[2].seq
    assert [e.number for e in await any_store.outbox_read("sub/a", after=1, limit=1)] == [2]
    assert await any_store.outbox_last("sub/a") == 3 and await any_store.outbox_last("nothing") == 0
    every = await any_store.outbox_since(0)
    assert [(e.stream, e.number) for e in every] == [("sub/a", 1), ("sub/b", 1), ("sub/a", 2), ("sub/a", 3)]
    assert [e.number for e in await any_store.outbox_since(every[1].seq)] == [2, 3]


async def test_one_event_on_many_streams_is_numbered_per_stream(any_store: Store) -> None:
    async with any_store.transaction() as tx:
        await tx.outbox_put("many/a", {"focus": "Basic/x"})
    async with any_store.transaction() as tx:
        await tx.outbox_put_many(["many/a", "many/b", "many/c"], {"focus": "Basic/y", "version": 2})
        await tx.outbox_put_many([], {"focus": "Basic/nothing"})
    with pytest.raises(RuntimeError):
        async with any_store.transaction() as tx:
            await tx.outbox_put_many(["many/a", "many/b"], {"focus": "Basic/z"})
            raise RuntimeError("rolled back: no event on any stream")
    assert [(e.number, e.payload) for e in await any_store.outbox_read("many/a")] == [
        (1, {"focus": "Basic/x"}),
        (2, {"focus": "Basic/y", "version": 2}),
    ]
    for name in ("many/b", "many/c"):
        assert [(e.number, e.payload["focus"]) for e in await any_store.outbox_read(name)] == [(1, "Basic/y")]
        assert await any_store.outbox_last(name) == 1
    fresh = await any_store.outbox_since(0)
    expected = [("many/a", 1), ("many/a", 2), ("many/b", 1), ("many/c", 1)]
    assert [(e.stream, e.number) for e in fresh] == expected
    assert len({e.recorded for e in fresh[1:]}) == 1  # one write, one moment


async def test_a_stream_is_read_by_number_among_busier_ones_and_trimming_forgets_only_its_events(
    any_store: Store,
) -> None:
    """One recording per write, whatever the streams it is on: a stream on few writes among busier ones
    (gaps longer than a read window, then events close together) is read by number from anywhere;
    trimmed events are gone from every read, and nothing another stream still holds goes with them."""
    busy = [f"busy/{n}" for n in range(5)]
    writes = 3 * MARK_SPACING + 7
    rare = [0, 1, 2, MARK_SPACING + 5, 3 * MARK_SPACING + 6]  # the writes the rare stream is on
    for w in range(writes):
        async with any_store.transaction() as tx:
            await tx.outbox_put_many(busy + (["rare"] if w in rare else []), {"w": w})
    for after in range(0, writes + 1, 7):
        got = await any_store.outbox_read("busy/3", after=after, limit=50)
        assert [e.number for e in got] == list(range(after + 1, min(after + 50, writes) + 1))
        assert all(e.payload == {"w": e.number - 1} for e in got)
    for after in range(len(rare) + 1):
        got = await any_store.outbox_read("rare", after=after, limit=2)
        expected = [(n + 1, rare[n]) for n in range(after, min(after + 2, len(rare)))]
        assert [(e.number, e.payload["w"]) for e in got] == expected
    first = await any_store.outbox_since(0, limit=12)  # whole writes: the first two, six events each
    assert [(e.stream, e.number) for e in first[:6]] == [(b, 1) for b in busy] + [("rare", 1)]
    assert len(first) == 12 and len({e.seq for e in first[:6]}) == 1 and first[6].seq > first[0].seq
    assert await any_store.outbox_since(first[-1].seq, limit=1) == (await any_store.outbox_since(0, 13))[12:]

    for name in busy:
        assert await any_store.outbox_trim(name, writes - 10) == writes - 10
    assert [e.number for e in await any_store.outbox_read("rare")] == [1, 2, 3, 4, 5]  # all still there
    assert [e.number for e in await any_store.outbox_read("busy/0")] == list(range(writes - 9, writes + 1))
    kept = await any_store.outbox_since(0, limit=10_000)
    assert sorted((e.stream, e.number) for e in kept) == sorted(
        [("rare", n) for n in range(1, 6)] + [(b, n) for b in busy for n in range(writes - 9, writes + 1)]
    )
    assert await any_store.outbox_trim("rare", 3) == 3 and await any_store.outbox_trim("rare", 2) == 0
    left = await any_store.outbox_read("rare")
    assert [(e.number, e.payload["w"]) for e in left] == [(4, rare[3]), (5, rare[4])]
    for name in [*busy, "rare"]:
        await any_store.outbox_trim(name, 10**9)  # through the end: numbering carries on
    assert await any_store.outbox_since(0, limit=10_000) == [] and await any_store.outbox_read("busy/1") == []
    async with any_store.transaction() as tx:
        await tx.outbox_put_many(["rare", "busy/1"], {"w": "after"})
    after = await any_store.outbox_since(0)
    assert [(e.stream, e.number) for e in after] == [("rare", 6), ("busy/1", writes + 1)]
    assert [e.number for e in await any_store.outbox_read("rare")] == [6]
    assert await any_store.outbox_last("rare") == 6


async def test_outbox_numbers_have_no_gaps_under_concurrency_and_survive_trimming(any_store: Store) -> None:
    async def record(i: int) -> None:
        async with any_store.transaction() as tx:
            await asyncio.sleep(0)
            await tx.outbox_put("busy", {"i": i})

    await asyncio.gather(*(record(i) for i in range(20)))
    events = await any_store.outbox_read("busy", limit=100)
    assert [e.number for e in events] == list(range(1, 21))
    assert sorted(e.payload["i"] for e in events) == list(range(20))
    assert await any_store.outbox_trim("busy", 15) == 15
    assert [e.number for e in await any_store.outbox_read("busy")] == [16, 17, 18, 19, 20]
    await record(99)
    assert (await any_store.outbox_read("busy", after=20))[0].number == 21
    assert await any_store.outbox_last("busy") == 21


async def test_outbox_wait_wakes_on_a_commit(any_store: Store) -> None:
    started = asyncio.get_running_loop().time()
    assert await any_store.outbox_wait(0, timeout=0.05) == 0  # nothing yet: waits out the timeout
    assert asyncio.get_running_loop().time() - started >= 0.04
    waiter = asyncio.ensure_future(any_store.outbox_wait(0, timeout=30))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    async with any_store.transaction() as tx:
        await tx.outbox_put("s", {})
    last = (await any_store.outbox_since(0))[-1].seq
    assert await asyncio.wait_for(waiter, timeout=5) == last
    started = asyncio.get_running_loop().time()
    assert await any_store.outbox_wait(last - 1, timeout=30) == last  # one exists already: at once
    assert asyncio.get_running_loop().time() - started < 5
    assert await any_store.outbox_wait(10**12, timeout=0) == last  # the latest, without waiting


async def test_concurrent_appends_are_all_committed(any_store: Store) -> None:
    """Group commit: every caller returns with its resource stored, whatever the batching."""
    rows = [
        version("AuditEvent", f"e{n}", 1, f"2026-01-01T00:00:{n:02d}.000Z", "POST", action="R")
        for n in range(40)
    ]
    await asyncio.gather(*(any_store.append([(row, None)]) for row in rows))
    for row in rows:
        stored = await any_store.read("AuditEvent", row.id)
        assert stored is not None and stored.body == row.body
    history = await any_store.history(HistoryQuery(resource_type="AuditEvent", count=100))
    assert history.total == 40


async def test_a_failing_append_fails_only_its_caller(any_store: Store) -> None:
    await any_store.append([(version("AuditEvent", "taken", 1, "2026-01-01T00:00:00.000Z", "POST"), None)])
    good = [version("AuditEvent", f"g{n}", 1, "2026-01-01T00:00:01.000Z", "POST") for n in range(5)]
    clash = version("AuditEvent", "taken", 1, "2026-01-01T00:00:02.000Z", "POST")  # version 1 exists
    results = await asyncio.gather(
        *(any_store.append([(row, None)]) for row in [*good[:2], clash, *good[2:]]), return_exceptions=True
    )
    assert [isinstance(r, Exception) for r in results] == [False, False, True, False, False, False]
    for row in good:
        assert await any_store.read("AuditEvent", row.id) is not None
