"""A view over every stored resource of its type, with worker processes beside the scan.

An admin's run (``$run`` without ``patient``/``_since``/``_limit``) and ``termtem view run`` read a whole
type. Reading is cheap next to what follows it (parsing the JSON, the view's compiled plan, building
Arrow columns), so past the first batches those steps move to worker processes: this process keeps
reading batches (the store's read-ahead) and hands each to a worker, which sends back an Arrow record
batch (or plain rows when a column's type is inferred from all its values, which no single batch can
do). Results are taken in the order the batches were read and at most a few batches are in flight, so
the table is the one a single process makes (``tests/analytics/test_view_scan.py``) and memory stays
bounded by the output. Scans shorter than ``_BODIES_BEFORE_WORKERS`` never start a worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.context
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orjson
import pyarrow as pa

from fhir_server.analytics.views import output
from fhir_server.analytics.views.definition import View, compile_view

_BODIES_BEFORE_WORKERS = 20_000  # small scans never pay for starting worker processes
Rows = list[tuple[Any, ...]]


def rows_of_bodies(view: View, bodies: list[bytes]) -> Rows:
    """The view's rows of stored JSON bodies (golden Patients left out, as ``run.visible_bodies``)."""
    from fhir_server.identity.model import is_golden_body

    out: Rows = []
    loads, may_match, rows = orjson.loads, view.may_match, view.rows
    patients = view.resource_type == "Patient"
    for body in bodies:
        if may_match(body) and not (patients and is_golden_body(body)):
            out.extend(rows(loads(body)))
    return out


def _typed(view: View) -> bool:
    """Every column's Arrow type follows from the definition (none inferred from the values)."""
    return all(view.types.get(name) is not None for name in view.columns)


# --- worker processes --------------------------------------------------------------------------------

_worker_view: View | None = None
Part = tuple[int, float, bytes | Rows]  # (worker pid, its CPU seconds so far, the batch's rows)


def _context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has the views' modules and R4 definitions loaded:
    starting one costs milliseconds, not the second a fresh interpreter takes (measured in
    scripts/bench/measures.py), and the server is itself a fresh single-threaded process (forking this
    one, which runs threads and an event loop, is unsafe)."""
    context = multiprocessing.get_context("forkserver")
    # "__main__" too: imported once in the fork server, so no worker imports the program again
    context.set_forkserver_preload(["__main__", "fhir_server.analytics.views.warm"])
    return context


# Views compiled in the fork server (``warm``), by their canonical JSON: a worker running a shipped view
# starts with its plan.
PRECOMPILED: dict[bytes, View] = {}


def view_key(definition: dict[str, Any]) -> bytes:
    return orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)


def _init_worker(definition: dict[str, Any]) -> None:
    global _worker_view
    _worker_view = PRECOMPILED.get(view_key(definition)) or compile_view(definition)


def _batch_in_worker(bodies: list[bytes]) -> Part:
    """One batch's rows: an Arrow IPC stream when the column types are known, else the rows."""
    assert _worker_view is not None, "_init_worker did not run"
    rows = rows_of_bodies(_worker_view, bodies)
    if not _typed(_worker_view):
        return os.getpid(), time.process_time(), rows
    table = output.to_table(_worker_view, rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return os.getpid(), time.process_time(), sink.getvalue().to_pybytes()


def _table_of(part: bytes) -> pa.Table:
    with pa.ipc.open_stream(part) as reader:
        return reader.read_all()


# --- the scan ----------------------------------------------------------------------------------------


async def scan_table(
    view: View,
    batches: AsyncIterator[list[bytes]],
    processes: int,
    worker_cpu: dict[int, float] | None = None,
) -> pa.Table:
    """The view's table over ``batches`` (every stored body of the view's type, in storage order).

    ``worker_cpu``: filled with each worker's CPU seconds (by pid), for benchmarks."""
    typed = _typed(view)
    loop = asyncio.get_running_loop()
    tables: list[pa.Table] = []
    rows: Rows = []
    inflight: deque[asyncio.Future[Part]] = deque()
    pool: ProcessPoolExecutor | None = None
    may_match = view.may_match
    seen = 0

    def take(done: Part) -> None:
        pid, cpu, part = done
        if worker_cpu is not None:
            worker_cpu[pid] = cpu
        if isinstance(part, bytes):
            tables.append(_table_of(part))
        else:
            rows.extend(part)

    try:
        async for batch in batches:
            seen += len(batch)
            if pool is None and processes > 0 and seen > _BODIES_BEFORE_WORKERS:
                pool = ProcessPoolExecutor(
                    max_workers=processes,
                    mp_context=_context(),
                    initializer=_init_worker,
                    initargs=(view.source,),
                )
            if pool is None:
                local = rows_of_bodies(view, batch)
                if typed:
                    tables.append(output.to_table(view, local))
                else:
                    rows.extend(local)
                continue
            # bodies the view's where cannot match stay here (a byte search), the rest go to a worker
            wanted = [body for body in batch if may_match(body)]
            if not wanted:
                continue
            inflight.append(loop.run_in_executor(pool, _batch_in_worker, wanted))
            while len(inflight) > processes + 1:
                take(await inflight.popleft())
        while inflight:
            take(await inflight.popleft())
    finally:
        for future in inflight:
            future.cancel()
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
    if not typed:
        return output.to_table(view, rows)
    if not tables:
        return output.to_table(view, [])
    return pa.concat_tables(tables).combine_chunks()
