"""Child summary benchmark: ``Patient/$summary`` p50/p99 for a child with a full record.

Two measurements:

* ``--store-path PATH`` (e.g. the shared 1M-resource store at /work/bench-1m/store.sqlite): the summary
  as the operation computes it (consent decision per section, the record search through the consent
  guard, every section, the document Bundle serialised to JSON; and the HTML page), in-process on that
  store, read-only: an admin (unrestricted) and the child's health centre restricted by the child's
  real data-sharing consent. Token checks and the AuditEvent write are per-request costs the security
  benchmark measures; they are left out so the shared store is never written to. With
  ``TERMTEM_BENCH_LOCK`` set, the store is read under a shared ``flock`` of that file.
* ``--resources N`` (default when no store is given): writes N generated resources into a fresh store
  (through the store's own write path, index included, no validation) and measures the whole request
  end to end (httpx over ASGI, auth on: token, consent, audit) as an admin and as the child's health
  centre, beside ``$everything`` of the same child as the baseline.

    python scripts/bench/summary.py --store-path /work/bench-1m/store.sqlite --requests 300
    python scripts/bench/summary.py --resources 20000 --requests 200

Prints p50/p99 (ms) per case and writes bench-results/summary-<timestamp>.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, percentile, shared_store_lock, write_results  # noqa: E402

from fhir_server import canonical  # noqa: E402
from fhir_server.config import Settings  # noqa: E402
from fhir_server.interactions.context import RequestContext  # noqa: E402
from fhir_server.interactions.errors import FhirError  # noqa: E402
from fhir_server.search.query import parse_search  # noqa: E402
from fhir_server.security import roles  # noqa: E402
from fhir_server.security.access import build_access  # noqa: E402
from fhir_server.security.consent import AccessRequest, ConsentBook  # noqa: E402
from fhir_server.security.guard import Guard, SecuredStore  # noqa: E402
from fhir_server.security.scopes import ScopeSet  # noqa: E402
from fhir_server.security.tokens import Principal  # noqa: E402
from fhir_server.storage.sqlite.store import SqliteStore  # noqa: E402
from fhir_server.summary import document, page  # noqa: E402

WELLBEING = canonical.structure_definition(canonical.PROFILE_WELLBEING)
DEVELOPMENT = canonical.structure_definition(canonical.PROFILE_DEVELOPMENTAL_SCREENING)
GROWTH = canonical.structure_definition(canonical.PROFILE_GROWTH)
TASK_SAMPLE = 80


def _stats(latencies: list[float]) -> dict[str, float]:
    ms = [t * 1000 for t in latencies]
    return {"p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2), "n": len(ms)}


async def _time(call: Callable[[], Awaitable[Any]], requests: int) -> list[float]:
    for _ in range(min(10, max(requests // 5, 2))):  # warm-up: caches, the consent view, the WHO tables
        await call()
    out = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


# --- choosing the child ------------------------------------------------------------------------------


async def _search(store: Any, resource_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    query = parse_search(resource_type, params, base_url="", strict=False, default_count=1000, max_count=1000)
    page_ = await store.search(query)
    return [orjson.loads(s.body) for s in page_.matches]


async def _full_child(store: Any) -> tuple[str, dict[str, Any] | None, int]:
    """(child id, its current active consent or None, observations and immunizations in its record):
    among children with an open referral Task, the one with the fullest record (growth, DSPM, vaccines,
    a flower and a consent preferred; the largest record otherwise)."""
    tasks = await _search(store, "Task", [("_count", str(TASK_SAMPLE)), ("status:not", "completed")])
    candidates = list(dict.fromkeys(t["for"]["reference"].split("/", 1)[1] for t in tasks if "for" in t))
    if not candidates:  # a small store may hold no open referral: any child then
        candidates = [p["id"] for p in await _search(store, "Patient", [("_count", "100")])]
    best: tuple[tuple[int, int], str, dict[str, Any] | None] | None = None
    today = date.today().isoformat()
    for child in candidates:
        observations = await _search(store, "Observation", [("subject", f"Patient/{child}")])
        claimed = {p for o in observations for p in o.get("meta", {}).get("profile", [])}
        immunizations = await _search(store, "Immunization", [("patient", f"Patient/{child}")])
        consents = await _search(store, "Consent", [("patient", f"Patient/{child}"), ("status", "active")])
        current = [c for c in consents if c["provision"].get("period", {}).get("end", "9999") >= today]
        size = len(observations) + len(immunizations)
        full = {GROWTH, DEVELOPMENT, WELLBEING} <= claimed and bool(immunizations) and bool(current)
        rank = (int(full), size)
        if best is None or rank > best[0]:
            best = (rank, child, current[0] if current else None)
    if best is None:
        raise SystemExit("no child in this store")
    return best[1], best[2], best[0][1]


def _health_centre(consent: dict[str, Any] | None) -> str | None:
    """The agency a TREAT provision of the child's consent names first (its health centre)."""
    for provision in (consent or {}).get("provision", {}).get("provision", []):
        if any(p.get("code") == "TREAT" for p in provision.get("purpose", [])):
            for actor in provision.get("actor", []):
                return str(actor["reference"]["reference"])
    return None


# --- in-process on an existing store -----------------------------------------------------------------


def _principal(organization: str, role: str) -> Principal:
    return Principal(
        client_id=f"bench-{role}",
        name=f"benchmark {role}",
        organization=organization,
        agency_type=None,
        role=roles.get_role(role),
        scopes=ScopeSet.parse(roles.get_role(role).default_scopes),
        token_id="",
    )


def _builder(
    store: SqliteStore, settings: Settings, principal: Principal, book: ConsentBook, child: str
) -> Callable[[bool], Awaitable[bytes]]:
    """What one request does after authentication: the caller's access from the consents, then the
    summary through the consent guard, serialised (JSON document, or the HTML page)."""

    async def build(html: bool) -> bytes:
        guard = Guard(principal, None, 404)
        if not principal.role.unrestricted:
            now = int(time.time() * 1000)
            request = AccessRequest(
                principal.organization, principal.agency_type, principal.role.purpose, now
            )
            guard.access = build_access(principal, await book.patients_by_class(store, request))
        secured: Any = SecuredStore(store, guard)
        ctx = RequestContext(store=secured, settings=settings, base_url="http://bench/fhir")
        ctx.extras["guard"] = guard
        built = await document.build_summary(ctx, child)
        if html:
            return page.render(built)[0].encode()
        return orjson.dumps(document.to_bundle(built))

    return build


async def run_on_store(path: Path, requests: int) -> dict[str, Any]:
    settings = Settings(store_url=f"sqlite:///{path}", auth=True)
    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    try:
        started = time.perf_counter()
        child, consent, size = await _full_child(store)
        took = time.perf_counter() - started
        print(f"child Patient/{child}: {size} observations and immunizations (chosen in {took:.1f}s)")
        book = ConsentBook()
        results: dict[str, Any] = {"child": child, "record_size": size}
        callers = [("admin", _principal("Organization/bench-admin", "admin"))]
        centre = _health_centre(consent)
        if centre:
            callers.append(("health-centre (consented)", _principal(centre, "health-centre")))
        for label, principal in callers:
            build = _builder(store, settings, principal, book, child)
            try:
                body = await build(False)
            except FhirError as exc:  # the consent does not let this agency see the child
                results[label] = f"not measured: {exc.status} (the consent does not count for it)"
                continue
            sections = orjson.loads(body)["entry"][0]["resource"]["section"]
            withheld = [
                s["code"]["coding"][0]["code"]
                for s in sections
                if s.get("emptyReason", {}).get("coding", [{}])[0].get("code") == "withheld"
            ]
            json_times = await _time(lambda b=build: b(False), requests)
            html_times = await _time(lambda b=build: b(True), max(requests // 3, min(requests, 20)))
            results[label] = {
                "json": _stats(json_times),
                "html": _stats(html_times),
                "bundle_bytes": len(body),
                "entries": len(orjson.loads(body)["entry"]),
                "withheld": withheld,
            }
        return results
    finally:
        await store.close()


# --- end to end on a fresh store ---------------------------------------------------------------------


def _stamp_record_keepers(household: list[dict[str, Any]]) -> None:
    """Mark each consented child's Patient and Consent as written by the health centre the Consent
    names, as if that centre had written them over the API: a consent counts only when recorded by an
    agency that keeps the child's record (``security.authority``)."""
    from fhir_server.security.access import OWNER_TAG_SYSTEM

    by_id = {r["id"]: r for r in household if r["resourceType"] == "Patient"}
    for consent in (r for r in household if r["resourceType"] == "Consent"):
        keeper = consent.get("organization", [{}])[0].get("reference")
        child = by_id.get(str(consent.get("patient", {}).get("reference", "")).rsplit("/", 1)[-1])
        if keeper and child is not None:
            for resource in (child, consent):
                meta = resource.setdefault("meta", {})
                meta["tag"] = [*meta.get("tag", []), {"system": OWNER_TAG_SYSTEM, "code": keeper}]


async def _load_direct(path: Path, households: Iterator[list[dict[str, Any]]]) -> int:
    """Write the generated data straight through the store's transaction API (index rows included, no
    validation): the benchmark is about reading, and a big store is built quickly this way."""
    from fhir_server.search.extract import extract_index
    from fhir_server.storage.base import StoredResource

    store = SqliteStore(f"sqlite:///{path}")
    await store.open()
    stamp, count = "2024-01-01T00:00:00.000Z", 0
    try:
        for household in households:
            _stamp_record_keepers(household)
            async with store.transaction() as tx:
                for r in household:
                    meta = {**r.get("meta", {}), "versionId": "1", "lastUpdated": stamp}
                    body = orjson.dumps({**r, "meta": meta})
                    await tx.put(
                        StoredResource(r["resourceType"], r["id"], 1, stamp, "PUT", body), extract_index(r)
                    )
                    count += 1
    finally:
        await store.close()
    return count


async def run_end_to_end(resources: int, requests: int) -> dict[str, Any]:
    from fhir_server.api.app import create_app
    from fhir_server.synthetic import generate

    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    from security import _client  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loaded = await _load_direct(
            folder / "summary.sqlite", generate(11, resources=resources, reference_date=date.today())
        )
        print(f"stored {loaded:,} generated resources")
        settings = Settings(
            store_url=f"sqlite:///{folder / 'summary.sqlite'}", auth=True, data_dir=folder / "data"
        )
        settings.token_lifetime_seconds = 3600  # one token lasts the whole run
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench/fhir") as http,
        ):
            admin = await _client(app, http, folder, "admin", "Organization/bench-ops", "admin")
            child, consent, size = await _full_child(app.state.store)
            print(f"child Patient/{child}: {size} observations and immunizations")
            callers = [("admin", admin)]
            centre = _health_centre(consent)
            if centre:
                callers.append(
                    (
                        "health-centre (consented)",
                        await _client(app, http, folder, "centre", centre, "health-centre"),
                    )
                )
            results: dict[str, Any] = {"child": child, "record_size": size, "resources": loaded}
            for label, caller in callers:
                url = f"Patient/{child}/$summary"
                probe = await caller.get(url)
                if probe.status_code != 200:  # the consent does not let this agency see the child
                    results[label] = (
                        f"not measured: HTTP {probe.status_code} (the consent does not count for it)"
                    )
                    continue

                async def get(u: str = url, c: Any = caller) -> None:
                    reply = await c.get(u)
                    if reply.status_code != 200:
                        raise RuntimeError(reply.text[:300])

                async def get_html(u: str = url, c: Any = caller) -> None:
                    reply = await c.get(u + "?_format=html")
                    if reply.status_code != 200:
                        raise RuntimeError(reply.text[:300])

                async def everything(
                    u: str = f"Patient/{child}/$everything?_count=1000", c: Any = caller
                ) -> None:
                    reply = await c.get(u)
                    if reply.status_code != 200:
                        raise RuntimeError(reply.text[:300])

                results[label] = {
                    "json": _stats(await _time(get, requests)),
                    "html": _stats(await _time(get_html, max(requests // 3, min(requests, 20)))),
                    "everything": _stats(await _time(everything, requests)),
                }
            return results


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For scripts/bench/run_all.py: end to end on a fresh store, beside ``$everything`` of the same
    child through the same path (the record as stored, nothing computed) as the baseline."""
    from run_all import figure  # type: ignore[import-not-found]

    result = asyncio.run(run_end_to_end(1_200 if quick else 20_000, 3 if quick else 300))
    figures = []
    for label, row in result.items():
        if not isinstance(row, dict):
            continue
        for pct in ("p50", "p99"):
            figures.append(
                figure(
                    f"$summary JSON, {label} ({pct})",
                    row["json"][f"{pct}_ms"],
                    "ms",
                    row["everything"][f"{pct}_ms"],
                    "$everything of the same child (the stored record, nothing computed)",
                    higher_is_better=False,
                )
            )
        figures.append(
            figure(
                f"$summary HTML page, {label} (p50)",
                row["html"]["p50_ms"],
                "ms",
                row["json"]["p50_ms"],
                "the same summary as JSON",
                higher_is_better=False,
            )
        )
    return {"figures": figures, "details": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store-path", type=Path, help="an existing SQLite store to read (e.g. the 1M store)"
    )
    parser.add_argument("--resources", type=int, default=20_000, help="size of the fresh store (end to end)")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    data: dict[str, Any] = {"machine": machine(), "requests": args.requests}
    if args.store_path:
        with shared_store_lock(args.store_path):
            data["mode"] = "in-process on an existing store (read-only; no token check nor audit write)"
            data["store"] = str(args.store_path)
            data["results"] = asyncio.run(run_on_store(args.store_path, args.requests))
    else:
        data["mode"] = "end to end over ASGI, auth on (token, consent, audit), fresh store"
        data["results"] = asyncio.run(run_end_to_end(args.resources, args.requests))
    for label, result in data["results"].items():
        if isinstance(result, dict):
            json_, html = result["json"], result["html"]
            print(
                f"{label:28} JSON p50 {json_['p50_ms']:7.1f} ms  p99 {json_['p99_ms']:7.1f} ms"
                f" | HTML p50 {html['p50_ms']:7.1f} ms  p99 {html['p99_ms']:7.1f} ms"
            )
    print(f"wrote {write_results('summary', data)}")


if __name__ == "__main__":
    main()
