"""Security overhead: token verification, scopes, consent and audit on read and search latency.

Builds one store (agencies, children with growth/DSPM/other Observations written by a hospital,
consents letting a school see half of the children), then times the same requests in-process (httpx
over ASGI, so network noise stays out) against the app with auth off and with auth on: as the owning
hospital (scopes + ownership + audit) and as a consented school (consent view + in-query restriction
+ audit). Prints a table and writes bench-results/security-<timestamp>.json.

    python scripts/bench/security.py [--children 500] [--requests 400]
    python scripts/bench/security.py --profile 1500   # cProfile of reads as the hospital, auth on

``--profile N`` seeds the same store, then reads one Observation N times at 8 concurrent requests as the
owning hospital (auth on) and with auth off, printing the CPU milliseconds per read of each (this
process: server and client) and, for auth on, where the event loop's CPU goes (cProfile on thread CPU
time: the parts of the secure path named, then the functions with the most own time; the writer
thread's commits are not in it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, percentile, write_results  # noqa: E402

from fhir_server import canonical  # noqa: E402
from fhir_server.api.app import create_app  # noqa: E402
from fhir_server.cli.clients import client_assertion  # noqa: E402
from fhir_server.config import Settings  # noqa: E402
from fhir_server.interactions.context import RequestContext  # noqa: E402
from fhir_server.interactions.update import update  # noqa: E402
from fhir_server.security import keys, roles  # noqa: E402
from fhir_server.security.agencies import AgencyRecord, AgencyRegistry  # noqa: E402
from fhir_server.security.clients import ClientRecord, ClientRegistry  # noqa: E402
from fhir_server.security.guard import agency_writer  # noqa: E402
from fhir_server.security.tokens import ASSERTION_TYPE  # noqa: E402

ORIGIN = "http://bench"
BASE = f"{ORIGIN}/fhir"
EXAMPLES = ROOT / "profiles" / "examples"


def _org(oid: str, kind: str) -> dict[str, Any]:
    system = canonical.code_system(canonical.CS_AGENCY_TYPE)
    return {
        "resourceType": "Organization",
        "id": oid,
        "name": oid,
        "type": [{"coding": [{"system": system, "code": kind}]}],
    }


def _consent(child: str) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": canonical.CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [
            {"coding": [{"system": canonical.LOINC_SYSTEM, "code": canonical.CONSENT_CATEGORY_LOINC}]}
        ],
        "patient": {"reference": f"Patient/{child}"},
        "dateTime": "2024-03-20T10:00:00+07:00",
        "performer": [{"reference": "RelatedPerson/guardian"}],  # the child is under 11: a guardian grants
        "policy": [{"uri": f"{canonical.BASE}/policy/pdpa-data-sharing"}],
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Organization/school"},
                }
            ],
            "purpose": [{"system": canonical.V3_ACT_REASON_SYSTEM, "code": "COC"}],
            "code": [
                {"coding": [{"system": canonical.code_system(canonical.CS_DATA_CLASS), "code": c}]}
                for c in ("demographics", "growth", "development")
            ],
        },
    }


class _Caller:
    def __init__(self, http: httpx.AsyncClient, token: str | None) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, url: str) -> httpx.Response:
        return await self.http.get(url, headers=self.headers)

    async def put(self, url: str, body: dict[str, Any]) -> httpx.Response:
        headers = {**self.headers, "Content-Type": "application/fhir+json"}
        return await self.http.put(url, content=orjson.dumps(body), headers=headers)

    async def post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        headers = {**self.headers, "Content-Type": "application/fhir+json"}
        return await self.http.post(url, content=orjson.dumps(body), headers=headers)


async def _client(app: Any, http: httpx.AsyncClient, folder: Path, name: str, org: str, role: str) -> _Caller:
    private = keys.generate_private_jwk("EC", "ES384")
    key_file = folder / f"{name}.jwk.json"
    keys.save_private_jwk(key_file, private)
    scopes = roles.get_role(role).default_scopes
    await ClientRegistry(app.state.store).add(
        ClientRecord(
            id=name,
            name=name,
            organization=org,
            role=role,
            scopes=scopes,
            jwks={"keys": [keys.public_jwk(private)]},
        )
    )
    reply = await http.post(
        f"{ORIGIN}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(name, key_file, f"{ORIGIN}/auth/token"),
            "scope": scopes,
        },
    )
    reply.raise_for_status()
    return _Caller(http, reply.json()["access_token"])


async def _seed(folder: Path, store_url: str, children: int) -> dict[str, list[str]]:
    settings = Settings(store_url=store_url, auth=True, data_dir=folder / "data")
    app = create_app(settings)
    growth = orjson.loads((EXAMPLES / "Observation-th-growth-example.json").read_bytes())
    growth.pop("id", None)
    ids: dict[str, list[str]] = {"obs": [], "consented": [], "hidden": []}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as http,
    ):
        admin = await _client(app, http, folder, "admin", "Organization/ops", "admin")
        agencies = AgencyRegistry(app.state.store)
        for oid, kind in (("hosp", "hospital"), ("school", "school"), ("ops", "district-office")):
            await agencies.set(AgencyRecord(f"Organization/{oid}", kind))
            (await admin.put(f"Organization/{oid}", _org(oid, kind))).raise_for_status()
        hospital = await _client(app, http, folder, "hospital", "Organization/hosp", "hospital")
        await _client(app, http, folder, "school", "Organization/school", "school")
        # The hospital's own records under its own ids, as `termtem load --store --agency` writes them.
        loader = RequestContext(
            store=agency_writer(app.state.store, "Organization/hosp"), settings=settings, base_url=""
        )
        for n in range(children):
            child = f"c{n}"
            patient = {"resourceType": "Patient", "id": child, "gender": "female", "birthDate": "2021-01-01"}
            await update(loader, "Patient", child, orjson.dumps(patient))
            for _ in range(3):
                body = {**growth, "subject": {"reference": f"Patient/{child}"}}
                reply = await hospital.post("Observation", body)
                reply.raise_for_status()
                ids["obs"].append(reply.json()["id"])
                (ids["consented"] if n % 2 == 0 else ids["hidden"]).append(reply.json()["id"])
            if n % 2 == 0:
                reply = await hospital.post("Consent", _consent(child))
                if reply.status_code != 201:
                    raise RuntimeError(reply.text[:500])
    return ids


async def _time(call: Callable[[int], Awaitable[httpx.Response]], requests: int) -> list[float]:
    for n in range(20):  # warm-up (caches, consent view)
        (await call(n)).raise_for_status()
    latencies = []
    for n in range(requests):
        started = time.perf_counter()
        reply = await call(n)
        latencies.append(time.perf_counter() - started)
        if reply.status_code != 200:
            raise RuntimeError(f"{reply.status_code}: {reply.text[:300]}")
    return latencies


async def _measure(
    folder: Path, store_url: str, ids: dict[str, list[str]], requests: int, auth: bool, who: str
) -> dict[str, list[float]]:
    settings = Settings(store_url=store_url, auth=auth, data_dir=folder / "data")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as http,
    ):
        if not auth:
            caller = _Caller(http, None)
        else:
            key_file = folder / f"{who}.jwk.json"
            reply = await http.post(
                f"{ORIGIN}/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": client_assertion(who, key_file, f"{ORIGIN}/auth/token"),
                    "scope": "system/*.rs",
                },
            )
            reply.raise_for_status()
            caller = _Caller(http, reply.json()["access_token"])
        obs = ids["consented"]
        return {
            "read": await _time(lambda n: caller.get(f"Observation/{obs[n % len(obs)]}"), requests),
            "search by subject": await _time(
                lambda n: caller.get(f"Observation?subject=Patient/c{2 * (n % 50)}"), requests
            ),
            "search page of 20": await _time(lambda n: caller.get("Observation?_count=20"), requests),
            "count": await _time(lambda n: caller.get("Observation?_summary=count"), requests // 4),
        }


# Parts of the secure read path, by the function that does each (cumulative time in the profile).
_PARTS = (
    ("security hook before the interaction", "service.py", "before"),
    ("  token check and principal", "service.py", "_authenticate"),
    ("  consent view", "consent.py", "patients_by_class"),
    ("  identity book refresh", "book.py", "current"),
    ("  access object", "service.py", "_access"),
    ("AuditEvent: build and queue (Security.after)", "service.py", "after"),
    ("  AuditEvent index rows", "extract.py", "extract_index"),
    ("  AuditEvent direct index rows", "audit_index.py", "audit_index_rows"),
    ("the read itself (interactions.read)", "read.py", "read"),
)


async def _concurrent(
    call: Callable[[int], Awaitable[httpx.Response]], requests: int, clients: int
) -> tuple[float, float]:
    """CPU seconds of this process, and of its event loop's thread alone (the rest: the store's
    writer and reader threads), for ``requests`` calls, ``clients`` at a time."""
    for n in range(20):  # warm-up (caches, consent view)
        (await call(n)).raise_for_status()
    counter = iter(range(requests))

    async def worker() -> None:
        for n in counter:
            reply = await call(n)
            if reply.status_code != 200:
                raise RuntimeError(f"{reply.status_code}: {reply.text[:300]}")

    started, loop_started = time.process_time(), time.thread_time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.process_time() - started, time.thread_time() - loop_started


async def _profiled_reads(
    folder: Path, store_url: str, ids: dict[str, list[str]], requests: int, auth: bool, profiler: Any
) -> tuple[float, float]:
    settings = Settings(store_url=store_url, auth=auth, data_dir=folder / "data")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as http,
    ):
        caller = _Caller(http, None)
        if auth:
            reply = await http.post(
                f"{ORIGIN}/auth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": client_assertion(
                        "hospital", folder / "hospital.jwk.json", f"{ORIGIN}/auth/token"
                    ),
                    "scope": "system/*.rs",
                },
            )
            reply.raise_for_status()
            caller = _Caller(http, reply.json()["access_token"])
        obs = ids["obs"]
        if profiler is not None:
            profiler.enable()
        try:
            return await _concurrent(lambda n: caller.get(f"Observation/{obs[n % len(obs)]}"), requests, 8)
        finally:
            if profiler is not None:
                profiler.disable()


def profile(children: int, requests: int) -> dict[str, Any]:
    """CPU per read with auth off and on (8 concurrent, in process), and the profile of auth on."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store_url = f"sqlite:///{folder / 'security.sqlite'}"
        ids = asyncio.run(_seed(folder, store_url, children))
        off = asyncio.run(_profiled_reads(folder, store_url, ids, requests, False, None))
        on = asyncio.run(_profiled_reads(folder, store_url, ids, requests, True, None))
        profiler = cProfile.Profile(time.thread_time)  # CPU of the event loop's thread: load-proof
        asyncio.run(_profiled_reads(folder, store_url, ids, requests, True, profiler))
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    parts = {}
    for label, filename, function in _PARTS:
        cumulative = sum(
            row[3]
            for (path, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
            if name == function and path.endswith("/" + filename) and "fhir_server" in path
        )
        parts[label] = round(100 * cumulative / total, 1)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    calls = io.StringIO()  # what the security hook and the audit spend their time in
    for function in (
        r"service.py:\d+\(before\)",
        r"service.py:\d+\(_authenticate\)",
        r"service.py:\d+\(after\)",
        r"audit.py:\d+\(write_audit\)",
        r"audit.py:\d+\(audit_version\)",
        r"tokens.py:\d+\(principal\)",
    ):
        pstats.Stats(profiler, stream=calls).sort_stats("cumulative").print_callees(function)
    return {
        "machine": machine(),
        "requests": requests,
        "cpu_ms_per_read": {"auth off": off[0] / requests * 1000, "auth on": on[0] / requests * 1000},
        "event_loop_cpu_ms_per_read": {
            "auth off": off[1] / requests * 1000,
            "auth on": on[1] / requests * 1000,
        },
        "profile_share_pct": parts,
        "top_own_time": text.getvalue(),
        "callees": calls.getvalue(),
    }


def _without_audit(measure: Callable[[], dict[str, list[float]]]) -> dict[str, list[float]]:
    """The same run with AuditEvent writing switched off: only to show what the audit costs."""
    from fhir_server.security import audit

    async def skip(store: Any, record: Any) -> None:
        return None

    original = audit.write_audit
    audit.write_audit = skip  # type: ignore[assignment]
    try:
        return measure()
    finally:
        audit.write_audit = original  # type: ignore[assignment]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "mean_ms": statistics.fmean(values) * 1000,
        "p50_ms": percentile(values, 50) * 1000,
        "p95_ms": percentile(values, 95) * 1000,
    }


def run(children: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store_url = f"sqlite:///{folder / 'security.sqlite'}"
        ids = asyncio.run(_seed(folder, store_url, children))
        runs = {
            "auth off": asyncio.run(_measure(folder, store_url, ids, requests, False, "")),
            "auth on, owner (hospital)": asyncio.run(
                _measure(folder, store_url, ids, requests, True, "hospital")
            ),
            "auth on, consented (school)": asyncio.run(
                _measure(folder, store_url, ids, requests, True, "school")
            ),
            "breakdown: school without the audit write": _without_audit(
                lambda: asyncio.run(_measure(folder, store_url, ids, requests, True, "school"))
            ),
        }
    results = {
        variant: {name: _ms(values) for name, values in timings.items()} for variant, timings in runs.items()
    }
    return {
        "machine": machine(),
        "children": children,
        "resources": children * 4 + children // 2,
        "requests": requests,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=500)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N reads instead")
    args = parser.parse_args()
    if args.profile:
        found = profile(args.children, args.profile)
        for variant, ms in found["cpu_ms_per_read"].items():
            loop = found["event_loop_cpu_ms_per_read"][variant]
            print(
                f"CPU ms per read, {variant}: {ms:.3f}"
                f" (event loop thread {loop:.3f}, other threads {ms - loop:.3f})"
            )
        print("share of the profiled auth-on run (cumulative, %):")
        for label, pct in found["profile_share_pct"].items():
            print(f"  {label:<50} {pct:5.1f}")
        print(found["top_own_time"])
        print(found["callees"])
        print(f"written to {write_results('security-profile', found)}")
        return
    report = run(args.children, args.requests)
    base = report["results"]["auth off"]
    print(
        f"{report['children']} children, {report['resources']} resources, {report['requests']} requests each"
    )
    print(f"{'request':<20} {'variant':<30} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'overhead':>9}")
    for variant, rows in report["results"].items():
        for name, row in rows.items():
            extra = row["mean_ms"] - base[name]["mean_ms"]
            print(
                f"{name:<20} {variant:<30} {row['mean_ms']:8.2f} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f}"
                f" {extra:+8.2f}"
            )
    print(f"written to {write_results('security', report)}")


if __name__ == "__main__":
    main()
