"""The Mongo outbox (schema version 3, ``storage.outbox``; documents described in ``schema``).

A transaction that records events writes one outbox document per recording, the counters of the
streams it is on (read, then written: every recording also writes the store-wide counter, so such
transactions commit one at a time across processes and numbers follow commit order) and the marks
that are due: a handful of round trips however many subscriptions a write notifies (schema version 2
took one round trip per subscription).
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from pymongo import ReturnDocument
from pymongo.errors import OperationFailure

from fhir_server.storage.base import OutboxEvent
from fhir_server.storage.mongo import schema
from fhir_server.storage.outbox import MARK_SPACING, NO_MARK, needs_mark

Recording = tuple[tuple[str, ...], str, bytes]  # streams, recorded instant, payload JSON
_PAGE = 100  # documents per read when finding new events


def _key(stream: str) -> str:
    return schema.OUTBOX_STREAM + stream


async def record(store: Any, session: Any, recordings: list[Recording]) -> None:
    """Write ``recordings`` inside the caller's transaction (``session``)."""
    counter = await store.counters.find_one_and_update(
        {"_id": schema.OUTBOX_SEQUENCE},
        {"$inc": {"n": len(recordings)}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    first = counter["n"] - len(recordings) + 1
    names = list(dict.fromkeys(name for streams, _, _ in recordings for name in streams))
    found = await store.counters.find(
        {"_id": {"$in": [_key(n) for n in names]}}, {"n": 1, "m": 1}, session=session
    ).to_list()
    state = {
        doc["_id"][len(schema.OUTBOX_STREAM) :]: [int(doc["n"]), int(doc.get("m", NO_MARK))] for doc in found
    }
    new: dict[str, int] = {}  # streams seen for the first time: the position of their first event
    for offset, (streams, _, _) in enumerate(recordings):
        for name in streams:
            if name not in state:
                new.setdefault(name, first + offset)
    added = dict.fromkeys(names, 0)
    marked: dict[str, int] = {}
    documents, marks = [], []
    for offset, (streams, recorded, payload) in enumerate(recordings):
        seq = first + offset
        numbers = []
        for name in streams:
            numbers.append(number := state.setdefault(name, [0, NO_MARK])[0] + 1)
            state[name][0] = number
            added[name] += 1
            if needs_mark(seq, state[name][1]):
                state[name][1] = marked[name] = seq
                marks.append({"s": name, "n": number, "q": seq})
        documents.append({"_id": seq, "r": recorded, "p": payload, "st": list(streams), "nu": numbers})
    for name, position in new.items():  # a stream's first event: its counters document
        await store.counters.update_one(
            {"_id": _key(name)},
            {"$set": {"n": state[name][0], "t": 0, "m": state[name][1], "k": position}},
            upsert=True,
            session=session,
        )
    by_step: dict[int, list[str]] = {}
    for name, count in added.items():
        if name in new:
            continue
        if name in marked:
            await store.counters.update_one(
                {"_id": _key(name)}, {"$inc": {"n": count}, "$set": {"m": marked[name]}}, session=session
            )
        else:
            by_step.setdefault(count, []).append(_key(name))
    for count, keys in by_step.items():  # one round trip for all the streams a write is on
        await store.counters.update_many({"_id": {"$in": keys}}, {"$inc": {"n": count}}, session=session)
    await store.outbox.insert_many(documents, session=session)
    if marks:
        await store.outbox_marks.insert_many(marks, session=session)


async def read(store: Any, stream: str, after: int, limit: int) -> list[OutboxEvent]:
    counters = await store.counters.find_one({"_id": _key(stream)})
    if counters is None or limit <= 0:
        return []
    last, trimmed = int(counters["n"]), int(counters.get("t", 0))
    wanted = max(after, trimmed) + 1
    out: list[OutboxEvent] = []
    position = 0
    while len(out) < limit and wanted <= last:
        # The greatest mark at or below the wanted event is less than MARK_SPACING positions before it.
        mark = (
            await store.outbox_marks.find({"s": stream, "n": {"$lte": wanted}})
            .sort([("n", -1)])
            .limit(1)
            .to_list()
        )
        position = max(position, int(mark[0]["q"]) if mark else 0)
        window = {"_id": {"$gte": position, "$lt": position + MARK_SPACING}, "st": stream}
        found = False
        for doc in await store.outbox.find(window).sort([("_id", 1)]).to_list():
            number = int(doc["nu"][doc["st"].index(stream)])
            if number < wanted:
                continue
            out.append(OutboxEvent(stream, number, int(doc["_id"]), doc["r"], orjson.loads(doc["p"])))
            wanted, found = number + 1, True
            if len(out) >= limit:
                break
        if not found:  # not there (forgotten meanwhile): nothing more to find
            break
        position += MARK_SPACING
    return out


async def since(store: Any, seq: int, limit: int) -> list[OutboxEvent]:
    """Events of every stream after position ``seq``, whole recordings at a time."""
    trimmed = {
        doc["_id"][len(schema.OUTBOX_STREAM) :]: int(doc["t"])
        for doc in await store.counters.find({"t": {"$gt": 0}}, {"t": 1}).to_list()
    }
    out: list[OutboxEvent] = []
    while len(out) < limit:
        docs = await store.outbox.find({"_id": {"$gt": seq}}).sort([("_id", 1)]).limit(_PAGE).to_list()
        if not docs:
            break
        for doc in docs:
            seq, payload = int(doc["_id"]), orjson.loads(doc["p"])
            for name, number in zip(doc["st"], doc["nu"], strict=True):
                if number > trimmed.get(name, 0):
                    out.append(OutboxEvent(name, int(number), seq, doc["r"], payload))
            if len(out) >= limit:
                break
    return out


async def last(store: Any, stream: str) -> int:
    doc = await store.counters.find_one({"_id": _key(stream)})
    return int(doc["n"]) if doc else 0


async def latest(store: Any) -> int:
    docs = await store.outbox.find({}, {"_id": 1}).sort([("_id", -1)]).limit(1).to_list()
    return int(docs[0]["_id"]) if docs else 0


async def trim(store: Any, stream: str, through: int) -> int:
    """Forget the stream's events up to ``through``; delete the documents nobody needs any more."""
    counters = await store.counters.find_one({"_id": _key(stream)})
    if counters is None:
        return 0
    last_number, trimmed = int(counters["n"]), int(counters.get("t", 0))
    new = min(through, last_number)  # numbering carries on: later events are not trimmed
    if new <= trimmed:
        return 0
    keep = (
        await store.outbox_marks.find({"s": stream, "n": {"$lte": new + 1}})
        .sort([("n", -1)])
        .limit(1)
        .to_list()
    )
    update: dict[str, Any] = {"t": new}
    if keep:
        update["k"] = int(keep[0]["q"])
        await store.outbox_marks.delete_many({"s": stream, "n": {"$lt": int(keep[0]["n"])}})
    # Only ever raised: a concurrent trim of the same stream cannot lower it again.
    await store.counters.update_one({"_id": _key(stream), "t": {"$lt": new}}, {"$set": update})
    # The first position still needed: the smallest ``k`` of the streams holding events (a stream
    # trimmed to its end and written since has an older ``k``: fewer documents go, none wrongly).
    holding = [
        int(doc.get("k", 0))
        for doc in await store.counters.find({"k": {"$exists": True}}, {"n": 1, "t": 1, "k": 1}).to_list()
        if int(doc["n"]) > int(doc.get("t", 0))
    ]
    needed = min(holding) if holding else await latest(store) + 1
    await store.outbox.delete_many({"_id": {"$lt": needed}})
    return new - trimmed


async def migrate(store: Any) -> None:
    """Schema version 2 kept one document per stream and event ({_id, s, n, r, p}, unique (s, n)):
    each becomes a recording of its own at its old position, marked; a stream's events before its
    first one left count as trimmed. Each step can run again (several processes may start at once)."""
    with contextlib.suppress(OperationFailure):  # absent: a new store, or already done
        await store.outbox.drop_index(schema.OUTBOX_V2_INDEX)
    if await store.outbox.find_one({"s": {"$exists": True}}) is None:
        return
    first: dict[str, tuple[int, int]] = {}  # stream -> (its first event's number, position)
    newest: dict[str, int] = {}
    old = await store.outbox.find({"s": {"$exists": True}}).sort([("_id", 1)]).to_list()
    for doc in old:
        first.setdefault(doc["s"], (int(doc["n"]), int(doc["_id"])))
        newest[doc["s"]] = int(doc["_id"])
    streams = await store.counters.find({"_id": {"$regex": "^" + schema.OUTBOX_STREAM}}).to_list()
    for doc in streams:
        if "t" in doc:
            continue
        name = doc["_id"][len(schema.OUTBOX_STREAM) :]
        number, position = first.get(name, (int(doc["n"]) + 1, 0))
        await store.counters.update_one(
            {"_id": doc["_id"], "t": {"$exists": False}},
            {"$set": {"t": number - 1, "m": newest.get(name, NO_MARK), "k": position}},
        )
    for doc in old:
        await store.outbox_marks.update_one(
            {"s": doc["s"], "n": doc["n"]}, {"$set": {"q": doc["_id"]}}, upsert=True
        )
        await store.outbox.update_one(
            {"_id": doc["_id"], "s": {"$exists": True}},
            {"$set": {"st": [doc["s"]], "nu": [doc["n"]]}, "$unset": {"s": "", "n": ""}},
        )
