"""Generate snapshots for our profiles and write the shipped conformance resources.

Reads the hand-authored differentials (and SearchParameters) in ``profiles/``, generates each
StructureDefinition's snapshot with ``fhir_server.validation.snapshot`` and writes the results to
``fhir_server/validation/profiles_generated/`` (committed; the server loads them from there).

    python scripts/generate_snapshots.py [--check]

``--check`` exits 1 when the generated folder is out of date instead of writing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_server.validation.snapshot import generate_snapshot  # noqa: E402

SOURCE = ROOT / "profiles"
TARGET = ROOT / "fhir_server" / "validation" / "profiles_generated"


def _dump(resource: dict[str, Any]) -> str:
    return json.dumps(resource, ensure_ascii=False, indent=1, sort_keys=False) + "\n"


def build() -> dict[str, str]:
    """File name -> content of every shipped resource."""
    sources = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SOURCE.glob("*.json"))]
    sds = {r["url"]: r for r in sources if r.get("resourceType") == "StructureDefinition"}
    done: dict[str, dict[str, Any]] = {}

    def make(url: str) -> dict[str, Any]:
        if url not in done:
            sd = sds[url]
            if sd["baseDefinition"] in sds:
                make(sd["baseDefinition"])
            done[url] = generate_snapshot(sd, done)
        return done[url]

    out: dict[str, str] = {}
    for url in sds:
        sd = make(url)
        out[f"StructureDefinition-{sd['id']}.json"] = _dump(sd)
    for r in sources:
        if r.get("resourceType") == "SearchParameter":
            out[f"SearchParameter-{r['id']}.json"] = _dump(r)
    out["SOURCE.md"] = (
        "# Generated: do not edit\n\nWritten by `scripts/generate_snapshots.py` from the differentials in "
        "`profiles/` (the source). Each StructureDefinition here is the differential plus the snapshot our "
        "own generator (`fhir_server/validation/snapshot.py`) built on the FHIR R4 4.0.1 base definitions.\n"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the generated files are stale")
    args = parser.parse_args()
    files = build()
    stale = [
        name
        for name, text in files.items()
        if not (TARGET / name).exists() or (TARGET / name).read_text(encoding="utf-8") != text
    ]
    extra = [p.name for p in TARGET.glob("*") if p.name not in files]
    if args.check:
        for name in stale + extra:
            print(f"stale: {name}")
        return 1 if stale or extra else 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in extra:
        (TARGET / name).unlink()
    for name, text in files.items():
        (TARGET / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} files to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
