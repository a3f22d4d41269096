"""Identity layer on the write path: what linking costs per Patient as the store fills with children.

Every Patient create is linked (``fhir_server.identity``): a new child is scored against the golden
records it could be. This posts rounds of 200-entry transaction bundles to the ASGI app in-process
(auth off, a fresh SQLite store, WAL with synchronous=NORMAL): first rounds of identical Patients (the
same child again and again, with no identifier, as crud, hostile and the quick ingest send), then rounds
of distinct children. A bounded create costs the same in the last round as in the first. The baseline is
the same bundle of distinct Observations (no identity work), in the same run.

    python scripts/bench/identity_writes.py [--rounds 5] [--entries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results

_FAMILIES = ["ศรีสุข", "ใจดี", "วงศ์ไทย", "สุขสันต์", "มั่นคง", "ทองดี", "แก้วมณี", "บุญมา"]
_GIVEN = ["สมชาย", "มะลิ", "ธนกร", "ปิยะ", "วรรณา", "กมล", "สุดา", "อนันต์", "พิมพ์", "ณัฐ"]


def _identical(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "gender": "female",
        "birthDate": "2020-02-03",
        "name": [{"family": "Srisuk", "given": ["Nok"]}],
    }


def _distinct(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "gender": "male" if n % 2 else "female",
        "birthDate": f"20{10 + n % 12:02d}-{1 + n % 12:02d}-{1 + (n // 12) % 28:02d}",
        "name": [
            {
                "family": _FAMILIES[(n // 7) % len(_FAMILIES)],
                "given": [f"{_GIVEN[n % len(_GIVEN)]}{'ก' * (n // 70 % 5)}"],
                "prefix": ["ด.ช." if n % 2 else "ด.ญ."],
            }
        ],
    }


def _observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": 10 + n % 20, "unit": "kg"},
    }


def _bundle(make: Any, start: int, entries: int) -> bytes:
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": make(start + i), "request": {"method": "POST", "url": make(0)["resourceType"]}}
                for i in range(entries)
            ],
        }
    )


async def _rounds(http: httpx.AsyncClient, make: Any, rounds: int, entries: int, offset: int) -> list[float]:
    seconds = []
    for r in range(rounds):
        body = _bundle(make, offset + r * entries, entries)
        started = time.perf_counter()
        reply = await http.post("/", content=body, headers={"Content-Type": "application/fhir+json"})
        seconds.append(round(time.perf_counter() - started, 3))
        if reply.status_code != 200:
            raise RuntimeError(f"{reply.status_code}: {reply.text[:300]}")
    return seconds


async def run(rounds: int, entries: int) -> dict[str, Any]:
    from fhir_server.api.app import create_app
    from fhir_server.config import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(store_url=f"sqlite:///{Path(folder) / 'identity.sqlite'}", auth=False)
        settings.subscription_delivery = False
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench/fhir", timeout=600) as http,
        ):
            baseline = await _rounds(http, _observation, rounds, entries, 0)
            identical = await _rounds(http, _identical, rounds, entries, 0)
            distinct = await _rounds(http, _distinct, rounds, entries, 0)
    return {"entries": entries, "observations_s": baseline, "identical_s": identical, "distinct_s": distinct}


def _per_s(entries: int, seconds: list[float]) -> float:
    return round(entries / seconds[-1], 1) if seconds and seconds[-1] else 0.0


def suite(quick: bool, workdir: Path) -> dict[str, Any]:
    """For scripts/bench/run_all.py: Patients/s in the last round of identical and of distinct children
    (quick: 2 rounds of 100 entries; full: 10 rounds of 200)."""
    from run_all import figure  # type: ignore[import-not-found]

    entries = 100 if quick else 200
    result = asyncio.run(run(2 if quick else 10, entries))
    base = _per_s(entries, result["observations_s"])
    figures = [
        figure(
            f"{kind} Patients in {entries}-entry transactions, last round",
            _per_s(entries, result[f"{kind}_s"]),
            "res/s",
            base,
            "distinct Observations, same bundles",
            higher_is_better=True,
        )
        for kind in ("identical", "distinct")
    ]
    return {"figures": figures, "details": result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds, args.entries))
    for kind in ("observations", "identical", "distinct"):
        times = result[f"{kind}_s"]
        print(f"{kind:13} seconds per {args.entries}-entry bundle, round by round: {times}")
    path = write_results("identity_writes", {"machine": machine(), **result})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
