"""Record-linkage benchmark: one child registered by several agencies, with noise.

Generates a population (``fhir_server.synthetic.registrations``: each child registered by 2 to 4
agencies, prefix and spelling variants, Buddhist-era years, swapped day and month, missing and
mistyped CIDs, G-codes, twins), writes every agency's records through the server's write path (as
``termtem load --agency`` does, in transactions of ``--batch`` records), and measures:

- precision and recall of automatic links, and of the review queue, against the true children
  (a pair of records is "found" when both records sit in one golden record, or in two golden records
  queued for review against each other);
- ``Patient/$match`` latency over HTTP (p50/p99) and how often the true child comes first;
- with ``--base-store``, the same on a copy of a large store (e.g. 1M resources) after the linking job
  ran over its Patients.

    python scripts/bench/linkage.py --children 20000
    python scripts/bench/linkage.py --children 2000 --quick

Goals (issue 14): precision of automatic links >= 99.9%, recall (automatic + queued) >= 95%,
``$match`` p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.bench.common import machine, percentile, start_server, write_results  # noqa: E402


def _pairs(groups: list[set[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


async def _load(store_url: str, seed: int, children: int, batch: int, log: Any) -> dict[str, Any]:
    from fhir_server.config import Settings
    from fhir_server.interactions.bundle import process_bundle
    from fhir_server.interactions.context import RequestContext
    from fhir_server.interactions.startup import prepare_store, release_store
    from fhir_server.security.guard import agency_writer
    from fhir_server.storage import create_store
    from fhir_server.synthetic.registrations import agency_resources, registrations

    settings = Settings(store_url=store_url)
    store = create_store(settings)
    await store.open()
    truth: dict[str, str] = {}
    records: dict[str, dict[str, Any]] = {}
    twins: set[frozenset[str]] = set()
    written = 0
    try:
        await prepare_store(store, settings)
        admin = RequestContext(store=store, settings=settings, base_url="", prefer_return="minimal")
        orgs = agency_resources(seed)
        await process_bundle(admin, _bundle(orgs))
        pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        started = time.perf_counter()

        async def flush(org: str) -> None:
            nonlocal written
            resources = pending.pop(org)
            ctx = RequestContext(
                store=agency_writer(store, org), settings=settings, base_url="", prefer_return="minimal"
            )
            await process_bundle(ctx, _bundle(resources))
            written += sum(1 for r in resources if r["resourceType"] == "Patient")
            if written % 2000 < batch:
                rate = written / (time.perf_counter() - started)
                log(f"  {written} agency records written ({rate:.0f}/s)")

        for registration in registrations(seed, children):
            truth[registration.patient["id"]] = registration.child
            records[registration.patient["id"]] = registration.patient
            if registration.twin_of:
                twins.add(frozenset((registration.child, registration.twin_of)))
            pending[registration.organization].extend(registration.resources)
            if sum(1 for r in pending[registration.organization] if r["resourceType"] == "Patient") >= batch:
                await flush(registration.organization)
        for org in list(pending):
            await flush(org)
        seconds = time.perf_counter() - started
    finally:
        await release_store(store)
        await store.close()
    return {"truth": truth, "twins": twins, "records": written, "seconds": seconds, "content": records}


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


async def _evaluate(store_url: str, truth: dict[str, str], twins: set[frozenset[str]]) -> dict[str, Any]:
    from fhir_server.config import Settings
    from fhir_server.identity import review
    from fhir_server.identity.model import GoldenState, is_golden
    from fhir_server.storage import create_store

    store = create_store(Settings(store_url=store_url))
    await store.open()
    goldens: list[set[str]] = []
    queued_goldens: list[tuple[str, str]] = []
    members: dict[str, set[str]] = {}
    try:
        async for stored in store.iterate("Patient"):
            resource = orjson.loads(stored.body)
            if not is_golden(resource):
                continue
            state = GoldenState.read(stored.id, resource)
            sources = {s for s in state.sources() if s in truth}
            members[stored.id] = sources
            if sources:
                goldens.append(sources)
            queued_goldens += [(stored.id, c.other) for c in state.candidates]  # stores before review
        for golden_id, candidates in await review.entries(store):
            queued_goldens += [(golden_id, c.other) for c in candidates]
    finally:
        await store.close()
    by_child: dict[str, set[str]] = defaultdict(set)
    for record, child in truth.items():
        by_child[child].add(record)
    true_pairs = _pairs(list(by_child.values()))
    auto = _pairs(goldens)
    queued = {
        frozenset((a, b)) for g, o in queued_goldens for a in members.get(g, ()) for b in members.get(o, ())
    } - auto
    correct_auto = auto & true_pairs
    twin_links = sum(1 for p in auto - true_pairs if frozenset(truth[x] for x in p) in twins)
    return {
        "children": len(by_child),
        "agency_records": len(truth),
        "golden_records": len(goldens),
        "true_pairs": len(true_pairs),
        "automatic_pairs": len(auto),
        "automatic_precision": len(correct_auto) / len(auto) if auto else 1.0,
        "automatic_recall": len(correct_auto) / len(true_pairs) if true_pairs else 1.0,
        "queued_pairs": len(queued),
        "queue_precision": len(queued & true_pairs) / len(queued) if queued else 1.0,
        "recall_automatic_plus_queued": len((auto | queued) & true_pairs) / len(true_pairs)
        if true_pairs
        else 1.0,
        "false_automatic_links": len(auto - true_pairs),
        "false_automatic_links_between_twins": twin_links,
        "twins": len(twins),
    }


def _queries(seed: int, children: int, samples: int) -> list[tuple[str, dict[str, Any]]]:
    """The same children registered again by an agency (another draw of the noise), half of them
    without any identifier: what a client would send to $match. Each with its true child."""
    from fhir_server.synthetic.registrations import NoiseConfig, registrations

    drawn = list(registrations(seed, children, noise=NoiseConfig(twins=0.0), noise_seed=1))
    picked = random.Random(seed + 1).sample(drawn, min(samples, len(drawn)))
    out = []
    for i, registration in enumerate(picked):
        patient = {k: v for k, v in registration.patient.items() if k != "id"}
        if i % 2:
            patient["identifier"] = [
                x for x in patient.get("identifier", []) if "/id/local/" in x.get("system", "")
            ]
        out.append((registration.child, patient))
    return out


def _timed(http: httpx.Client, method: str, url: str, body: Any = None) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    reply = http.request(method, url, json=body)
    took = (time.perf_counter() - started) * 1000
    if reply.status_code != 200:
        raise RuntimeError(reply.text)
    return took, reply.json()


def _match_latency(
    base: str, queries: list[tuple[str, dict[str, Any]]], truth: dict[str, str]
) -> dict[str, Any]:
    """$match over HTTP, and the plain indexed search underneath it (the baseline)."""
    times: list[float] = []
    plain: list[float] = []
    first_right = answered = 0
    golden = "https://termtem.org/fhir/tag/identity|golden"
    with httpx.Client(base_url=base, timeout=120) as http:
        for _, patient in queries[:5]:  # warm-up (the Thai word list loads on first use)
            _timed(http, "POST", "Patient/$match", _parameters(patient))
        for child, patient in queries:
            took, bundle = _timed(http, "POST", "Patient/$match", _parameters(patient))
            times.append(took)
            entries = bundle.get("entry") or []
            if entries:
                answered += 1
                links = entries[0]["resource"].get("link", [])
                sources = {
                    lk["other"]["reference"].split("/", 1)[1] for lk in links if lk["type"] == "seealso"
                }
                first_right += any(truth.get(s) == child for s in sources)
            born = str(patient.get("birthDate", "2020-01-01"))
            took, _ = _timed(http, "GET", f"Patient?birthdate={born}&_tag={golden}&_count=50")
            plain.append(took)
    return {
        "requests": len(times),
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "max_ms": round(max(times), 2),
        "search_p50_ms": round(percentile(plain, 50), 2),
        "search_p99_ms": round(percentile(plain, 99), 2),
        "answered": answered,
        "true_child_first": first_right,
        "true_child_first_rate": first_right / len(times) if times else 0.0,
    }


def _parameters(patient: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient}]}


def _naive(records: dict[str, dict[str, Any]], truth: dict[str, str]) -> dict[str, Any]:
    """A simple deterministic rule for comparison: same Thai given and family name and same birth date
    as written (what a register keyed on name and birth date would link)."""
    groups: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for record_id, patient in records.items():
        name = patient["name"][0]
        groups[(name["given"][0], name.get("family", ""), patient.get("birthDate", ""))].add(record_id)
    predicted = _pairs([g for g in groups.values() if len(g) > 1])
    by_child: dict[str, set[str]] = defaultdict(set)
    for record, child in truth.items():
        by_child[child].add(record)
    true_pairs = _pairs(list(by_child.values()))
    right = predicted & true_pairs
    return {
        "pairs": len(predicted),
        "precision": len(right) / len(predicted) if predicted else 1.0,
        "recall": len(right) / len(true_pairs) if true_pairs else 1.0,
    }


async def _link_existing(store_url: str, log: Any) -> dict[str, Any]:
    from fhir_server.config import Settings
    from fhir_server.identity import job
    from fhir_server.storage import create_store

    store = create_store(Settings(store_url=store_url))
    await store.open()
    try:
        started = time.perf_counter()
        record = await job.run(store, progress=lambda r: log(f"  link-existing: {r['processed']} records"))
        return {**record, "seconds": round(time.perf_counter() - started, 1)}
    finally:
        await store.close()


async def _count(store_url: str) -> int:
    from fhir_server.config import Settings
    from fhir_server.storage import create_store

    store = create_store(Settings(store_url=store_url))
    await store.open()
    try:
        n = 0
        async for _ in store.iterate():
            n += 1
        return n
    finally:
        await store.close()


def run(
    children: int,
    seed: int = 42,
    *,
    samples: int = 500,
    batch: int = 100,
    store_path: Path | None = None,
    base_store: Path | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Build the store, measure linkage and $match; returns the figures (see the module docstring)."""
    folder = Path(tempfile.mkdtemp(prefix="linkage-"))
    path = store_path or folder / "linkage.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store_url = f"sqlite:///{path}"
    result: dict[str, Any] = {"machine": machine(), "children_requested": children, "seed": seed}
    try:
        if base_store:
            log(f"copying {base_store} ...")
            started = time.perf_counter()
            shutil.copyfile(base_store, path)
            for suffix in ("-wal", "-shm"):
                if Path(f"{base_store}{suffix}").exists():
                    shutil.copyfile(f"{base_store}{suffix}", f"{path}{suffix}")
            result["base_store"] = {
                "path": str(base_store),
                "copy_seconds": round(time.perf_counter() - started, 1),
            }
            log("linking the Patients already stored ...")
            result["base_store"]["link_existing"] = asyncio.run(_link_existing(store_url, log))
        log(f"writing {children} children's agency records ...")
        loaded = asyncio.run(_load(store_url, seed, children, batch, log))
        result["ingest"] = {
            "agency_records": loaded["records"],
            "seconds": round(loaded["seconds"], 1),
            "records_per_second": round(loaded["records"] / loaded["seconds"], 1),
        }
        log("evaluating links ...")
        result["linkage"] = asyncio.run(_evaluate(store_url, loaded["truth"], loaded["twins"]))
        result["naive_rule"] = _naive(loaded["content"], loaded["truth"])
        result["store_resources"] = asyncio.run(_count(store_url))
        log(f"$match on a store of {result['store_resources']} resources ...")
        queries = _queries(seed, children, samples)
        with start_server(folder, store_url=store_url) as server:
            result["match"] = _match_latency(server.base, queries, loaded["truth"])
    finally:
        if not store_path:
            shutil.rmtree(folder, ignore_errors=True)
    return result


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For ``run_all.py``: linkage quality beside a naive name-and-birth-date rule, $match latency
    beside the plain indexed search it starts from."""
    from run_all import figure

    result = run(
        60 if quick else 20_000,
        samples=20 if quick else 500,
        store_path=workdir / "linkage.sqlite",
        log=lambda text: None,
    )
    linkage, naive, match = result["linkage"], result["naive_rule"], result["match"]
    floor = 1e-9  # a ratio needs a non-zero baseline
    figures = [
        figure(
            "recall of true pairs, automatic + queued",
            linkage["recall_automatic_plus_queued"],
            "fraction",
            max(naive["recall"], floor),
            "same name and birth date as written",
            higher_is_better=True,
        ),
        figure(
            "precision of automatic links",
            linkage["automatic_precision"],
            "fraction",
            max(naive["precision"], floor),
            "same name and birth date as written",
            higher_is_better=True,
        ),
        figure(
            "Patient/$match over HTTP, p50",
            max(match["p50_ms"], floor),
            "ms",
            max(match["search_p50_ms"], floor),
            "the indexed birth-date search it starts from",
            higher_is_better=False,
            p99_ms=match["p99_ms"],
            search_p99_ms=match["search_p99_ms"],
        ),
    ]
    return {"figures": figures, "details": result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--children", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=100, help="agency records per transaction")
    parser.add_argument("--match-samples", type=int, default=500)
    parser.add_argument("--store-path", type=Path, help="where to build the store (default: a temp dir)")
    parser.add_argument("--base-store", type=Path, help="copy this store first (e.g. a 1M-resource store)")
    parser.add_argument("--quick", action="store_true", help="2,000 children, 200 $match requests")
    args = parser.parse_args()
    if args.quick:
        args.children, args.match_samples = min(args.children, 2000), min(args.match_samples, 200)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    result = run(
        args.children,
        args.seed,
        samples=args.match_samples,
        batch=args.batch,
        store_path=args.store_path,
        base_store=args.base_store,
        log=log,
    )
    linkage, match, naive = result["linkage"], result["match"], result["naive_rule"]
    print(
        f"children {linkage['children']}, agency records {linkage['agency_records']}, golden records"
        f" {linkage['golden_records']}, twins {linkage['twins']}\n"
        f"automatic links: precision {linkage['automatic_precision']:.4%}"
        f" ({linkage['false_automatic_links']} false, {linkage['false_automatic_links_between_twins']}"
        f" between twins), recall {linkage['automatic_recall']:.2%}\n"
        f"review queue: {linkage['queued_pairs']} pairs, precision {linkage['queue_precision']:.2%};"
        f" recall automatic + queued {linkage['recall_automatic_plus_queued']:.2%}\n"
        f"naive rule (same name and birth date as written): precision {naive['precision']:.2%},"
        f" recall {naive['recall']:.2%}\n"
        f"ingest: {result['ingest']['records_per_second']} agency records/s\n"
        f"$match on {result['store_resources']} resources: p50 {match['p50_ms']} ms, p99 {match['p99_ms']} ms"
        f" (plain search p50 {match['search_p50_ms']} ms); true child first in"
        f" {match['true_child_first_rate']:.1%}"
    )
    print(f"results: {write_results('linkage', result)}")


if __name__ == "__main__":
    main()
