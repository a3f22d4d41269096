"""Collections and the indexes each search-parameter kind needs.

Index entries are multikey over one embedded array each, so compound keys stay within one array (a
MongoDB rule) and every lookup starts with the parameter key ``k``: one search reads one narrow range.
"""

from __future__ import annotations

from typing import Any

RESOURCES = "resources"
HISTORY = "history"
KV = "kv"
COUNTERS = "counters"
SEQUENCE = "seq"  # the counters document that numbers every committed version
# The outbox (``storage.outbox``): one document per recording {_id: position, r: recorded, p: payload,
# st: [streams], nu: [their event numbers]}; a counters document per stream {n: last number,
# t: trimmed through, m: position of its latest mark, k: a position at or before its first kept
# event}; marks {s: stream, n: number, q: position}.
OUTBOX = "outbox"
OUTBOX_MARKS = "outbox_marks"
OUTBOX_SEQUENCE = "outbox"  # the counters document that numbers every recording
OUTBOX_STREAM = "outbox:"  # + stream: the counters document of one stream
OUTBOX_V2_INDEX = "stream_number"  # schema version 2: one document per stream and event, unique (s, n)

Keys = list[tuple[str, int]]

RESOURCE_INDEXES: dict[str, Keys] = {
    # ``_id`` (Type/id) serves reads; these serve paging over a type and the rid keyset.
    "rid": [("rid", 1)],
    "type_rid": [("t", 1), ("rid", 1)],
    "type_updated": [("t", 1), ("lu", 1), ("rid", 1)],
    "type_id": [("t", 1), ("i", 1)],
    "string": [("xs.k", 1), ("xs.n", 1)],
    "token": [("xt.k", 1), ("xt.c", 1), ("xt.s", 1)],
    "token_system": [("xt.k", 1), ("xt.s", 1)],
    "reference": [("xr.k", 1), ("xr.i", 1), ("xr.t", 1)],
    "reference_url": [("xr.k", 1), ("xr.u", 1)],
    # _revinclude, compartments and _has look references up by target first.
    "reference_target": [("xr.i", 1), ("xr.t", 1), ("xr.k", 1)],
    "date": [("xd.k", 1), ("xd.l", 1), ("xd.h", 1)],
    "date_high": [("xd.k", 1), ("xd.h", 1)],
    "number": [("xn.k", 1), ("xn.l", 1), ("xn.h", 1)],
    "quantity": [("xq.k", 1), ("xq.l", 1), ("xq.h", 1)],
    "quantity_canonical": [("xq.k", 1), ("xq.cc", 1), ("xq.cl", 1), ("xq.ch", 1)],
    "uri": [("xu.k", 1), ("xu.u", 1)],
    # Composite values: the first component narrows (token, or a reference) inside its group.
    "composite_token": [("xc.xt.k", 1), ("xc.xt.c", 1)],
    "composite_reference": [("xc.xr.k", 1), ("xc.xr.i", 1)],
}

HISTORY_INDEXES: dict[str, Keys] = {
    "version": [("t", 1), ("i", 1), ("v", 1)],
    "type_seq": [("t", 1), ("_id", 1)],
    "updated": [("lu", 1)],
}

OUTBOX_MARK_INDEXES: dict[str, Keys] = {
    "stream_number": [("s", 1), ("n", 1)],
}

UNIQUE = {(RESOURCES, "rid"), (HISTORY, "version"), (OUTBOX_MARKS, "stream_number")}


def index_specs() -> list[tuple[str, str, Keys, dict[str, Any]]]:
    """(collection, name, keys, options) for every index the store creates at start-up."""
    out = []
    for collection, table in (
        (RESOURCES, RESOURCE_INDEXES),
        (HISTORY, HISTORY_INDEXES),
        (OUTBOX_MARKS, OUTBOX_MARK_INDEXES),
    ):
        for name, keys in table.items():
            options: dict[str, Any] = {"name": name}
            if (collection, name) in UNIQUE:
                options["unique"] = True
            out.append((collection, name, keys, options))
    return out
