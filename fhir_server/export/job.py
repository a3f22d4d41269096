"""The ``export`` job kind: plan, stream every type into NDJSON files, list deletions, write the manifest.

Phases, each resumable from the job's checkpoint:
- plan: the caller's restriction, the cohort (Group members or ``patient``), the types, and for
  de-identified exports the k-anonymity generalisation of every exported child. Cohort and
  generalisation are written to files in the export folder, so a resumed job uses exactly the same.
- export: per type, byte-bounded pages from ``Store.scan`` in storage order; each page is transformed
  off the event loop (a thread; de-identification moves to worker processes once an export is past
  its first pages) and appended in order; the checkpoint holds the position of the last page written
  and the files' sizes, saved after the bytes are on disk.
- deleted (``_since`` only): resources deleted since then, as transaction Bundles of DELETE entries.
- finish: the error file, AuditEvents (who, what, how many, and which children), and the manifest,
  returned as the job's result.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import multiprocessing
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server import canonical, jobs
from fhir_server.export import cohort, heap, transform
from fhir_server.export.caller import Caller, readable, restriction
from fhir_server.export.children import FILE as CHILDREN_FILE
from fhir_server.export.children import ChildIndex, PageChildren, named_patients
from fhir_server.export.deid import (
    SUPPRESSED,
    Deidentifier,
    child_of,
    patient_elements,
    shifted_quasi_identifiers,
)
from fhir_server.export.departures import Departures
from fhir_server.export.files import NdjsonWriter, make_durable, private_write, remove_folder
from fhir_server.export.pseudonyms import Pseudonymiser, project_key
from fhir_server.export.request import ExportRequest, level_types
from fhir_server.identity.model import is_golden_body
from fhir_server.interactions.errors import FhirError
from fhir_server.search.access import Access
from fhir_server.search.query import AllOf, AnyOf, InCompartments, SearchQuery, parse_search
from fhir_server.security import access as acc
from fhir_server.security import audit
from fhir_server.security.consent import AccessRequest
from fhir_server.security.roles import IDENTIFIED_TYPES
from fhir_server.security.tokens import Principal
from fhir_server.storage.base import HistoryQuery
from fhir_server.storage.files import private_dir

KIND = "export"
DEID_EXTENSION = f"{canonical.BASE}/export/deidentification"
_CHECKPOINT_SECONDS = 1.0
_PAGE_ROWS = 2000
_ROWS_BEFORE_WORKERS = 20_000  # small exports never pay for starting worker processes
_AUDIT_CHUNK = 200
_MEMBERS_FILE = ".members.json"


def export_types(request: ExportRequest, access: Access | None, deidentify: bool) -> list[str]:
    """The types this export writes, Patient first, then alphabetical."""
    if request.types is not None:
        wanted = list(request.types)
    else:
        covered = level_types(request.level)
        wanted = sorted(t for t in covered if t != "AuditEvent")
    out = []
    for rtype in wanted:
        if not readable(access, rtype):
            continue
        if deidentify and (rtype not in acc.patient_links() or rtype in IDENTIFIED_TYPES - {"Patient"}):
            continue  # de-identified exports hold the children's own data only
        if rtype == "AuditEvent" and deidentify:
            continue
        out.append(rtype)
    return sorted(out, key=lambda t: (t != "Patient", t))


def _query(
    rtype: str, request: ExportRequest, access: Access | None, members: list[str] | None, base_url: str
) -> SearchQuery | None:
    """The scan of one type (None when the type cannot hold data of the cohort)."""
    conditions: list[Any] = []
    if request.since:
        since = parse_search(
            rtype,
            [("_lastUpdated", f"ge{request.since}")],
            base_url=base_url,
            strict=True,
            default_count=1,
            max_count=1,
        )
        conditions.extend(since.conditions)
    filters = request.type_filters.get(rtype)
    if filters:
        options = []
        for text in filters:
            parsed = parse_search(
                rtype,
                parse_qsl(text, keep_blank_values=True),
                base_url=base_url,
                strict=False,
                default_count=1,
                max_count=1,
            )
            options.append(AllOf(parsed.conditions))
        conditions.append(AnyOf(tuple(options)) if len(options) > 1 else options[0])
    if rtype == "Patient":
        # The identity layer's golden records (a server-managed merged identity per child) stay out,
        # as in searches that do not ask for them: each child once per agency that keeps it.
        from fhir_server.identity.conditional import search_params

        left_out = search_params(("Patient",), [], None)
        conditions.extend(
            parse_search(
                "Patient", left_out, base_url=base_url, strict=True, default_count=1, max_count=1
            ).conditions
        )
    if request.level != "system":
        keys = acc.patient_links().get(rtype)
        ids = tuple(members) if members is not None else None
        if rtype == "Patient":
            if ids is not None:
                conditions.append(InCompartments("Patient", ids, is_self=True))
        elif keys:
            conditions.append(InCompartments("Patient", ids, keys))
        else:
            return None
    return SearchQuery((rtype,), tuple(conditions), access=access)


@dataclass
class _Context:
    """What every run of one export works with (rebuilt on each start from params and plan files)."""

    job: jobs.JobHandle
    request: ExportRequest
    caller: Caller | None
    folder: Path
    access: Access | None
    deidentify: bool
    base_url: str
    file_max_bytes: int
    page_bytes: int
    members: list[str] | None = None
    # which records are one child, the k-anonymity levels, folded records, audited children: on disk
    children: ChildIndex | None = None
    deid: Deidentifier | None = None
    departures: Departures | None = None  # de-identified ``_since`` exports: children whose records went
    processes: int = 0  # worker processes that de-identify pages (0: a thread of this process)
    pool: ProcessPoolExecutor | None = None
    key: bytes = b""
    rows: int = 0

    def start_workers(self, rows: int) -> None:
        """Past the first rows of a de-identified export, hand the rest to worker processes (small
        exports never pay for starting them)."""
        self.rows += rows
        if self.processes and self.pool is None and self.rows >= _ROWS_BEFORE_WORKERS:
            # Fresh interpreters (spawn): forking a process that runs threads and an event loop is unsafe.
            self.pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=transform.init_worker,
                initargs=(self.key,),
            )

    def page_children(self, rows: transform.Page, rtype: str) -> PageChildren:
        """What the Patients a page names are (in a thread: a regex scan and three look-ups)."""
        assert self.children is not None
        return self.children.for_page(named_patients(rows, rtype))

    pending_audit: set[str] = field(default_factory=set)  # at most one AuditEvent's worth
    principal: Principal | None = None  # the caller as the registry knows it now

    def consent_request(self) -> AccessRequest | None:
        """The caller's question to the children's Consents, as every read asks it."""
        if self.principal is None or self.caller is None:
            return None
        p = self.principal
        now = int(time.time() * 1000)
        return AccessRequest(p.organization, p.agency_type, self.caller.purpose, now, p.agency_ids)


async def run(job: jobs.JobHandle, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    params = job.params
    request = ExportRequest.from_record(params["request"])
    caller = Caller.from_record(params.get("caller"))
    folder = Path(params["folder"])
    private_dir(folder)  # 0700: the files hold children's data (and are 0600 themselves)
    deidentify = bool(params["deidentify"])
    try:
        access, principal = await restriction(job.store, caller, deidentify)
    except FhirError as error:
        return _refused(error)
    ctx = _Context(
        job=job,
        request=request,
        caller=caller,
        folder=folder,
        access=access,
        deidentify=deidentify,
        base_url=params["base_url"],
        file_max_bytes=int(params["file_max_bytes"]),
        page_bytes=int(params["page_bytes"]),
        processes=int(params.get("processes", 0)) if deidentify else 0,
        principal=principal,
    )
    key = b""
    if deidentify:
        key = await project_key(job.store, params["project"])
        ctx.deid = Deidentifier(Pseudonymiser(key))
    ctx.key = key
    state = dict(checkpoint) if checkpoint else {"phase": "plan"}
    if state["phase"] != "plan" and not (folder / CHILDREN_FILE).exists():
        state = {"phase": "plan"}  # planned by an older version of this job: plan again
    ctx.children = await asyncio.to_thread(ChildIndex, folder, fresh=state["phase"] == "plan")
    try:
        result = await _run(ctx, state, params)
    finally:
        ctx.children.close()
    if "manifest" in result:
        remove_working_files(folder)  # done: no real ids kept beside the files it serves
    return result


async def _run(ctx: _Context, state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    job, request, folder = ctx.job, ctx.request, ctx.folder
    if state["phase"] == "plan":
        try:
            state = await _plan(ctx, params)
        except FhirError as error:
            return _refused(error)
        await job.save(state, done=0, message=f"planned: {len(state['types'])} resource types to write")
        await asyncio.to_thread(heap.give_back)
    else:
        members = folder / _MEMBERS_FILE
        ctx.members = orjson.loads(members.read_bytes()) if members.exists() else None
    if state["phase"] == "export":
        try:
            await _export(ctx, state)
        finally:
            if ctx.pool is not None:
                ctx.pool.shutdown(wait=False, cancel_futures=True)
                ctx.pool = None
        state = {**state, "phase": "deleted", "typeIndex": 0, "before": None}
        await job.save(state)
    if state["phase"] == "deleted":
        if request.since:
            await _deleted(ctx, state)
        state = {**state, "phase": "finish"}
        await job.save(state)
    return await _finish(ctx, state, params)


def remove_working_files(folder: Path) -> None:
    """Remove what an export kept for itself beside its files (the cohort, the child index: real ids)
    once it is complete: a finished job is not resumed, and its folder holds only what it serves."""
    for name in (_MEMBERS_FILE, CHILDREN_FILE):
        for suffix in ("", "-journal"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)


def _refused(error: FhirError) -> dict[str, Any]:
    """A result that polling answers with ``error`` (a refusal found when the job started)."""
    return {"refused": {"status": error.status, "outcome": error.outcome()}}


async def _plan(ctx: _Context, params: dict[str, Any]) -> dict[str, Any]:
    store, request = ctx.job.store, ctx.request
    members: list[str] | None = None
    if request.level == "group":
        stored = await store.read("Group", str(request.group_id))
        if stored is None or stored.deleted or not acc.visible(ctx.access, "Group", stored.body):
            raise FhirError(404, f"Group/{request.group_id} is not known", code="not-found")
        members = await cohort.members(store, orjson.loads(stored.body), ctx.access, ctx.base_url)
    if request.patients is not None:
        # ``patient`` names children by any one of their records the caller may see, as a Group does
        named = await cohort.visible_patients(store, set(request.patients), ctx.access)
        chosen = await cohort.same_children(store, named)
        members = sorted(chosen if members is None else chosen & set(members))
    if members is not None:
        private_write(ctx.folder / _MEMBERS_FILE, orjson.dumps(members))
    ctx.members = members
    types = export_types(request, ctx.access, ctx.deidentify)
    suppressed = generalised = merged = 0
    if ctx.deid is not None:
        await _patients(ctx)
        await _same_child(ctx)
        if "Patient" in types:
            offsets = Pseudonymiser(ctx.key)  # by child key: the golden record's id, or the record's

            def values(key: str, _id: str, *elements: Any) -> Any:
                return shifted_quasi_identifiers(*elements, offsets.offset_days(key))

            assert ctx.children is not None
            suppressed, generalised, merged = await asyncio.to_thread(
                ctx.children.generalise, int(params["k"]), values
            )
    return {
        "phase": "export",
        "types": types,
        "typeIndex": 0,
        "after": 0,
        "files": {},
        "skipped": 0,
        "children": await cohort.count_children(store, members) if members is not None else None,
        "suppressedChildren": suppressed,
        "generalisedChildren": generalised,
        "mergedRecords": merged,
    }


async def _patients(ctx: _Context) -> None:
    """The Patients this export writes, into the child index: id and the elements the quasi-identifiers
    come from, in storage order (nothing of them is held in memory)."""
    query = _query("Patient", ctx.request, ctx.access, ctx.members, ctx.base_url)
    if query is None or not readable(ctx.access, "Patient"):
        return
    assert ctx.children is not None
    after = 0
    while True:
        page = await ctx.job.store.scan(query, after, limit=_PAGE_ROWS, max_bytes=ctx.page_bytes)
        rows = [(s.id, *patient_elements(orjson.loads(s.body))) for s in page.resources]
        await asyncio.to_thread(ctx.children.add_patients, rows)
        if page.last is None:
            return
        after = page.last


async def _same_child(ctx: _Context) -> None:
    """Every record of a child the identity layer links across agencies -> the child's golden record,
    into the child index: one child, one pseudonym, one date offset, one k-anonymity count
    (``pseudonyms.child_key``).

    Asked for the children this export may cover: its Patients, its cohort, and those whose data the
    caller's consents open (a child's Observations may be exported without its Patient)."""
    from fhir_server.identity.book import current

    assert ctx.children is not None
    book = await current(ctx.job.store)

    def links(ids: Iterable[str]) -> list[tuple[str, str]]:
        out = []
        for patient_id in ids:
            golden = book.child(patient_id)
            if golden is not None:
                out.extend((record, golden) for record in book.linked(patient_id))
        return out

    sources: list[Iterable[str]] = [ctx.members or ()]
    if ctx.access is not None:
        seen: set[int] = set()
        for grant in ctx.access.grants:
            if grant.patients and id(grant.patients) not in seen:  # grants share their sets
                seen.add(id(grant.patients))
                sources.append(grant.patients)
    for batch in ctx.children.patient_ids():
        await asyncio.to_thread(ctx.children.add_links, links(batch))
    for ids in sources:
        ordered = iter(ids)
        while batch := list(itertools.islice(ordered, 5000)):
            await asyncio.to_thread(ctx.children.add_links, links(batch))


def _elements_for(request: ExportRequest, rtype: str) -> list[str] | None:
    if not request.elements:
        return None
    out = []
    for item in request.elements:
        kind, dot, name = item.partition(".")
        if not dot:
            out.append(item)
        elif kind == rtype:
            out.append(name)
    return out or None


def _page_function(ctx: _Context, rtype: str) -> Any:
    """What turns one page of ``rtype`` into lines: in a worker process, or in a thread of this one."""
    elements = _elements_for(ctx.request, rtype)
    if ctx.deid is None:
        return functools.partial(transform.plain, rtype, elements=elements, audit=ctx.caller is not None)
    if ctx.pool is not None:
        return functools.partial(transform.deid_in_worker, rtype, elements=elements)
    deid = ctx.deid

    def in_thread(rows: transform.Page) -> transform.Result:
        return transform.deidentified(deid, ctx.page_children(rows, rtype), rtype, rows, elements)

    return in_thread


async def _export(ctx: _Context, state: dict[str, Any]) -> None:
    """Every type in turn: scan pages, transform them (several pages in flight when worker processes do
    it), append them in order; the checkpoint names the last page written and the files' sizes."""
    store, job = ctx.job.store, ctx.job
    loop = asyncio.get_running_loop()
    types: list[str] = state["types"]
    last_save = time.monotonic()
    unsynced: set[Path] = set()  # files finished since the last checkpoint: made durable before it

    async def checkpoint(writer: NdjsonWriter | None, rtype: str) -> None:
        nonlocal last_save
        if writer is not None:
            state["files"][rtype] = await asyncio.to_thread(writer.sync)
        await asyncio.to_thread(make_durable, unsynced)
        await job.save(state, done=_written(state), message=_message(state, rtype))
        await asyncio.to_thread(heap.give_back)  # freed page memory back to the system (flat RSS)
        last_save = time.monotonic()

    while state["typeIndex"] < len(types):
        rtype = types[state["typeIndex"]]
        query = _query(rtype, ctx.request, ctx.access, ctx.members, ctx.base_url)
        saved = state["files"].get(rtype, [])
        writer = NdjsonWriter.resume(ctx.folder, rtype, rtype, ctx.file_max_bytes, saved)
        # Pages being turned into lines: (future, position of the page's last row, lines already written).
        inflight: deque[tuple[asyncio.Future[transform.Result], int | None, bool]] = deque()
        scanning: asyncio.Future[Any] | None = None
        try:
            if query is not None:
                scanning = asyncio.ensure_future(
                    store.scan(query, state["after"], limit=_PAGE_ROWS, max_bytes=ctx.page_bytes)
                )
            while scanning is not None or inflight:
                depth = ctx.processes + 1 if ctx.pool is not None else 1
                if scanning is not None and len(inflight) < depth:
                    page = await scanning
                    scanning = None
                    if page.last is not None:
                        # the next page is read while this one is transformed and written
                        scanning = asyncio.ensure_future(
                            store.scan(query, page.last, limit=_PAGE_ROWS, max_bytes=ctx.page_bytes)
                        )
                    rows = [(s.id, s.body) for s in page.resources]
                    if rows:
                        ctx.start_workers(len(rows))
                        work = _page_function(ctx, rtype)
                        if ctx.pool is None:
                            # one page at a time: transformed and appended in one trip to a thread
                            done_page = asyncio.to_thread(_transform_and_write, work, rows, writer)
                            inflight.append((asyncio.ensure_future(done_page), page.last, True))
                        else:
                            children = await asyncio.to_thread(ctx.page_children, rows, rtype)
                            work = functools.partial(work, children=children)
                            future = loop.run_in_executor(ctx.pool, work, rows)
                            inflight.append((future, page.last, False))
                    if scanning is not None and len(inflight) < depth:
                        continue
                if not inflight:
                    continue
                future, last, written = inflight.popleft()
                lines, skipped, children = await future
                if not written:
                    await asyncio.to_thread(writer.write, lines)
                state["skipped"] += skipped
                await _audit_children(ctx, children)
                if last is not None and time.monotonic() - last_save >= _CHECKPOINT_SECONDS:
                    state["after"] = last  # every page up to this one is in the file
                    await checkpoint(writer, rtype)
        finally:
            if scanning is not None:
                scanning.cancel()
            for future, _, _ in inflight:
                future.cancel()
            if inflight:
                # a thread still appending must finish before the file is closed
                await asyncio.gather(*(f for f, _, _ in inflight), return_exceptions=True)
            writer.close()
        state["files"][rtype] = writer.state()
        unsynced |= writer.unsynced
        state["typeIndex"] += 1
        state["after"] = 0
        # A finished type reaches the checkpoint with the next save (a crash before it redoes the type
        # from its last checkpoint: its file is cut back to that size and later files are dropped).
        if time.monotonic() - last_save >= _CHECKPOINT_SECONDS:
            await checkpoint(None, rtype)
    await asyncio.to_thread(make_durable, unsynced)


def _transform_and_write(work: Any, rows: transform.Page, writer: NdjsonWriter) -> transform.Result:
    result: transform.Result = work(rows)
    writer.write(result[0])
    return result


def _written(state: dict[str, Any]) -> int:
    return sum(f["count"] for files in state["files"].values() for f in files)


def _message(state: dict[str, Any], rtype: str) -> str:
    done = min(state["typeIndex"], len(state["types"]))
    return f"{_written(state):,} resources written; {rtype} ({done} of {len(state['types'])} types done)"


async def _audit_children(ctx: _Context, children: set[str], flush: bool = False) -> None:
    """AuditEvents naming the children whose data left (so "who saw my child's data" finds exports)."""
    if ctx.caller is None:
        return
    fresh = children - ctx.pending_audit
    if fresh and ctx.children is not None:
        fresh = await asyncio.to_thread(ctx.children.unaudited, fresh)  # named by an earlier AuditEvent
    ctx.pending_audit |= fresh
    while len(ctx.pending_audit) >= _AUDIT_CHUNK or (flush and ctx.pending_audit):
        chunk = sorted(ctx.pending_audit)[:_AUDIT_CHUNK]
        ctx.pending_audit -= set(chunk)
        record = _audit_record(ctx, 200, f"bulk export {ctx.job.id}: data of these children was exported")
        record.touched = [("Patient", child, b"") for child in chunk]
        await audit.write_audit(ctx.job.store, record)
        if ctx.children is not None:
            await asyncio.to_thread(ctx.children.audited, chunk)


def _audit_record(ctx: _Context, status: int, description: str) -> audit.AuditRecord:
    caller = ctx.caller
    request = ctx.request
    return audit.AuditRecord(
        interaction="operation",
        outcome_status=status,
        client_id=caller.client_id if caller else None,
        organization=caller.organization if caller else None,
        purpose=caller.purpose if caller else None,
        resource_type="Group" if request.level == "group" else None,
        resource_id=request.group_id,
        query=ctx.job.params.get("request_url"),
        description=description,
    )


async def _deleted(ctx: _Context, state: dict[str, Any]) -> None:
    """Resources deleted since ``_since`` (visible before deletion, in the cohort), as Bundles."""
    store, request = ctx.job.store, ctx.request
    types: list[str] = state["types"]
    writer = NdjsonWriter.resume(
        ctx.folder, "Bundle", "deleted-Bundle", ctx.file_max_bytes, state["files"].get("deleted", [])
    )
    members = set(ctx.members) if ctx.members is not None else None
    ctx.departures = Departures(store, str(request.since), ctx.access, members, ctx.consent_request())
    last_save = time.monotonic()
    try:
        while state["typeIndex"] < len(types):
            rtype = types[state["typeIndex"]]
            query = HistoryQuery(
                resource_type=rtype, since=request.since, count=500, before_seq=state.get("before")
            )
            while True:
                page = await store.history(query)
                lines = []
                for entry in page.entries:
                    line = await _deletion(ctx, entry, members, state)
                    if line is not None:
                        lines.append(line)
                writer.write(lines)
                if page.next_before_seq is None:
                    break
                query = HistoryQuery(
                    resource_type=rtype, since=request.since, count=500, before_seq=page.next_before_seq
                )
                state["before"] = page.next_before_seq
                if time.monotonic() - last_save >= _CHECKPOINT_SECONDS:
                    state["files"]["deleted"] = await asyncio.to_thread(writer.sync)
                    await ctx.job.save(state)
                    last_save = time.monotonic()
            state["typeIndex"] += 1
            state["before"] = None
            if time.monotonic() - last_save >= _CHECKPOINT_SECONDS:
                state["files"]["deleted"] = await asyncio.to_thread(writer.sync)
                await ctx.job.save(state)
                last_save = time.monotonic()
        state["files"]["deleted"] = await asyncio.to_thread(writer.sync)
    finally:
        writer.close()


async def _deletion(
    ctx: _Context, entry: Any, members: set[str] | None, state: dict[str, Any]
) -> bytes | None:
    if not entry.deleted:
        return None
    store = ctx.job.store
    current = await store.read(entry.resource_type, entry.id)
    if current is None or not current.deleted or current.version != entry.version:
        return None  # created again since: it is in the output, not deleted
    previous = await store.vread(entry.resource_type, entry.id, entry.version - 1)
    if previous is None or not previous.body:
        return None
    assert ctx.departures is not None
    if entry.resource_type == "Patient":
        if is_golden_body(previous.body):
            return None  # golden records (the server's own) are never exported, nor their deletion
        if not await ctx.departures.seen_before(entry.id, previous.body):
            return None
    elif not acc.visible(ctx.access, entry.resource_type, previous.body):
        return None
    resource = orjson.loads(previous.body)
    child = child_of(resource)
    if members is not None and (child is None or child not in members):
        return None
    rid = entry.id
    if ctx.deid is not None:
        assert ctx.children is not None
        pseudonyms = ctx.deid.pseudonyms
        if entry.resource_type == "Patient":
            # one pseudonymous Patient per child: gone only with the last record the caller may see
            child = await ctx.departures.child_gone(entry.id)
            if child is None:
                return None
        named = {i for i in (child, entry.id) if i is not None}
        page = await asyncio.to_thread(ctx.children.for_page, named)
        pseudonyms.use(page.same_child)
        if child is not None and page.levels.get(pseudonyms.key(child), 0) == SUPPRESSED:
            return None
        if entry.resource_type == "Patient":
            assert child is not None
            rid = pseudonyms.child(child)
            reported = state.setdefault("deletedChildren", [])
            if rid in reported:
                return None
            reported.append(rid)
        else:
            rid = pseudonyms.reference(entry.resource_type, rid, repeats=False)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"{entry.resource_type}/{rid}"}}],
    }
    return orjson.dumps(bundle) + b"\n"


def _file_url(ctx: _Context, name: str) -> str:
    return f"{ctx.base_url}/_export/{ctx.job.id}/{name}"


async def _finish(ctx: _Context, state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    notes = list(ctx.request.notes)
    if state.get("skipped"):
        notes.append(
            f"{state['skipped']} resources of {state['suppressedChildren']} children were left out to keep"
            f" every birth month, sex and district combination shared by at least {params['k']} children"
        )
    errors = []
    if notes:
        writer = NdjsonWriter.resume(
            ctx.folder, "OperationOutcome", "OperationOutcome", ctx.file_max_bytes, []
        )
        writer.write([orjson.dumps(_outcome(note)) + b"\n" for note in notes])
        errors = [f.record() for f in writer.files]
        writer.close()
        make_durable(writer.unsynced)
    output = [f for rtype in state["types"] for f in state["files"].get(rtype, []) if f["count"]]
    deleted = [f for f in state["files"].get("deleted", []) if f["count"]]
    counts: dict[str, int] = {}
    for f in output:
        counts[f["type"]] = counts.get(f["type"], 0) + f["count"]
    manifest: dict[str, Any] = {
        "transactionTime": params["transaction_time"],
        "request": params["request_url"],
        "requiresAccessToken": True,
        "output": [
            {"type": f["type"], "url": _file_url(ctx, f["name"]), "count": f["count"]} for f in output
        ],
        "deleted": [
            {"type": "Bundle", "url": _file_url(ctx, f["name"]), "count": f["count"]} for f in deleted
        ],
        "error": [
            {"type": "OperationOutcome", "url": _file_url(ctx, f["name"]), "count": f["count"]}
            for f in errors
        ],
    }
    if ctx.deidentify:
        manifest["extension"] = {
            DEID_EXTENSION: {
                "method": f"{canonical.BASE}/export/deidentification-method-v1",
                "project": params["project_label"],
                "k": params["k"],
                "suppressedChildren": state.get("suppressedChildren", 0),
                "suppressedResources": state.get("skipped", 0),
                "generalisedChildren": state.get("generalisedChildren", 0),
                # Patient records of children registered by several agencies, folded into one Patient
                "mergedRecords": state.get("mergedRecords", 0),
            }
        }
    await _audit_children(ctx, set(), flush=True)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) or "nothing"
    what = "de-identified " if ctx.deidentify else ""
    request = ctx.request
    asked = "; ".join(
        part
        for part in (
            f"level {request.level}" + (f" Group/{request.group_id}" if request.group_id else ""),
            f"_type {','.join(request.types)}" if request.types else "",
            f"_since {request.since}" if request.since else "",
            f"_typeFilter {' | '.join(q for qs in request.type_filters.values() for q in qs)}"
            if request.type_filters
            else "",
            f"{state.get('children')} children in the cohort" if ctx.members is not None else "",
        )
        if part
    )
    description = f"bulk export {ctx.job.id} complete: {what}{summary} ({asked})"
    record = _audit_record(ctx, 200, description[:1000])
    await audit.write_audit(ctx.job.store, record)
    return {"manifest": manifest, "counts": counts}


def _outcome(note: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": note}],
    }


async def _cleanup(store: Any, job: jobs.Job) -> None:
    folder = job.params.get("folder")
    if folder:
        await asyncio.to_thread(remove_folder, Path(folder))


jobs.register(jobs.JobKind(KIND, run, on_cancel=_cleanup, on_expire=_cleanup, keep_seconds=86400.0))
