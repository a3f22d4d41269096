"""Generate the compact FHIR R4 definition files shipped in ``fhir_server/definitions/data/``.

The server must never fetch HL7 packages at run time, so this script reads the official npm-format
packages once and writes small, deterministic files (sorted, gzip with a fixed mtime) that
``fhir_server.definitions`` loads lazily. Running it twice gives byte-identical output.

    python scripts/generate_definitions.py            # defaults: ../shared/fhir/*.tgz
    python scripts/generate_definitions.py --out /tmp/defs
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_REPO = Path(__file__).resolve().parents[1]
_DEFAULT_CORE = _REPO / ".." / "shared" / "fhir" / "hl7.fhir.r4.core-4.0.1.tgz"
_DEFAULT_EXPANSIONS = _REPO / ".." / "shared" / "fhir" / "hl7.fhir.r4.expansions-4.0.1.tgz"
_DEFAULT_OUT = _REPO / "fhir_server" / "definitions" / "data"

_REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
_GZIP_THRESHOLD = 1_000_000  # bytes: plain JSON above this is written gzipped
_MAX_EXPANSION_PARAMETERS = 10
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_ELEMENT_FLAGS = ("isModifier", "mustSupport", "isSummary")
_ELEMENT_KEEP = ("contentReference", "maxLength", "slicing", "sliceIsConstraining")
_SP_KEEP = (
    "target",
    "modifier",
    "comparator",
    "multipleOr",
    "multipleAnd",
    "chain",
    "xpathUsage",
)


def _read_package(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(package.json, every FHIR resource in ``package/``) of an npm-format FHIR package."""
    manifest: dict[str, Any] = {}
    resources: list[dict[str, Any]] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or not name.startswith("package/") or name.count("/") != 1:
                continue
            base = name.removeprefix("package/")
            if base.startswith(".") or base == "package.json":
                if base == "package.json":
                    manifest = orjson.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                continue
            data = orjson.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
            if isinstance(data, dict) and "resourceType" in data:
                resources.append(data)
    return manifest, resources


def _of_type(resources: list[dict[str, Any]], resource_type: str) -> Iterator[dict[str, Any]]:
    return (r for r in resources if r["resourceType"] == resource_type)


def _first_sentence(text: str | None) -> str | None:
    if not text:
        return text
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def _by_url(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda r: (r.get("url", ""), r.get("id", "")))


# -- resource types ---------------------------------------------------------------------------------


def _primitive_regex(sd: dict[str, Any]) -> str | None:
    for element in sd.get("snapshot", {}).get("element", []):
        if element["path"] != f"{sd['type']}.value":
            continue
        for type_ in element.get("type", []):
            for ext in type_.get("extension", []):
                if ext.get("url") == _REGEX_EXT:
                    return ext["valueString"]
    return None


def _resource_types(structure_defs: list[dict[str, Any]], source: str) -> dict[str, Any]:
    # Base types are specializations, plus the roots (Resource, Element) that have no base at all.
    base = [
        sd for sd in structure_defs if sd.get("derivation") == "specialization" or "baseDefinition" not in sd
    ]
    resources = [sd for sd in base if sd["kind"] == "resource"]
    complex_ = [sd for sd in base if sd["kind"] == "complex-type"]
    primitives = [sd for sd in base if sd["kind"] == "primitive-type"]
    return {
        "source": source,
        "license": "CC0-1.0",
        "resourceTypes": sorted(sd["type"] for sd in resources if not sd.get("abstract")),
        "abstract": sorted(sd["type"] for sd in resources if sd.get("abstract")),
        "complexTypes": sorted(sd["type"] for sd in complex_ if not sd.get("abstract")),
        "abstractComplexTypes": sorted(sd["type"] for sd in complex_ if sd.get("abstract")),
        "primitiveTypes": {
            sd["type"]: _primitive_regex(sd) for sd in sorted(primitives, key=lambda s: s["type"])
        },
    }


# -- search parameters ------------------------------------------------------------------------------


def _search_parameter(sp: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": sp["id"],
        "url": sp["url"],
        "code": sp["code"],
        "base": list(sp.get("base", [])),  # 10 extension-based ones in R4 have none
        "type": sp["type"],
    }
    if sp.get("expression"):
        out["expression"] = sp["expression"]
    for key in _SP_KEEP:
        if key in sp:
            out[key] = sp[key]
    if sp.get("component"):
        out["component"] = [
            {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
        ]
    if sp.get("description"):
        out["description"] = _first_sentence(sp["description"])
    return out


# -- compartments -----------------------------------------------------------------------------------


def _compartments(resources: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for cd in sorted(_of_type(resources, "CompartmentDefinition"), key=lambda c: c["code"]):
        if cd["id"] == "example":  # an illustrative example, not a base compartment
            continue
        members = {r["code"]: list(r["param"]) for r in cd.get("resource", []) if r.get("param")}
        out[cd["code"]] = dict(sorted(members.items()))
    return out


# -- structure definitions --------------------------------------------------------------------------


def _compact_type(type_: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"code": type_.get("code")}
    for key in ("profile", "targetProfile"):
        if type_.get(key):
            out[key] = type_[key]
    return out


def _compact_element(element: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": element.get("id", element["path"]), "path": element["path"]}
    if "sliceName" in element:
        out["sliceName"] = element["sliceName"]
    out["min"] = element.get("min")
    out["max"] = element.get("max")
    if "base" in element:
        out["base"] = element["base"]
    if element.get("type"):
        out["type"] = [_compact_type(t) for t in element["type"]]
    for key in _ELEMENT_KEEP:
        if key in element:
            out[key] = element[key]
    for key, value in element.items():
        if key.startswith(("fixed", "pattern", "minValue", "maxValue")):
            out[key] = value
    if "binding" in element:
        binding = {k: element["binding"][k] for k in ("strength", "valueSet") if k in element["binding"]}
        out["binding"] = binding
    if element.get("constraint"):
        out["constraint"] = [
            {k: c[k] for k in ("key", "severity", "expression", "human", "source") if k in c}
            for c in element["constraint"]
        ]
    for key in _ELEMENT_FLAGS:
        if element.get(key):
            out[key] = True
    return out


def _compact_structure_definition(sd: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: sd[k]
        for k in ("url", "id", "name", "type", "kind", "abstract", "derivation", "baseDefinition", "version")
        if k in sd
    }
    if sd.get("context"):
        out["context"] = sd["context"]
    out["elements"] = [_compact_element(e) for e in sd.get("snapshot", {}).get("element", [])]
    return out


# -- terminology ------------------------------------------------------------------------------------


def _without_narrative(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "text"}


def _expansions(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for vs in sorted(_of_type(resources, "ValueSet"), key=lambda v: v["url"]):
        expansion = vs.get("expansion")
        if not expansion:
            continue
        compact: dict[str, Any] = {}
        if "total" in expansion:
            compact["total"] = expansion["total"]
        params = expansion.get("parameter", [])
        if params and len(params) <= _MAX_EXPANSION_PARAMETERS:
            compact["parameter"] = params
        compact["contains"] = expansion.get("contains", [])
        out[vs["url"]] = compact
    return out


# -- output -----------------------------------------------------------------------------------------


def _write(out_dir: Path, stem: str, data: Any, *, gzip_always: bool = False) -> Path:
    """Write ``stem``.json (indented, small files) or ``stem``.json.gz (compact, deterministic)."""
    pretty = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    for stale in (out_dir / f"{stem}.json", out_dir / f"{stem}.json.gz"):
        stale.unlink(missing_ok=True)
    if not gzip_always and len(pretty) <= _GZIP_THRESHOLD:
        path = out_dir / f"{stem}.json"
        path.write_bytes(pretty)
        return path
    path = out_dir / f"{stem}.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(data), compresslevel=9, mtime=0))
    return path


def _source_md(core: dict[str, Any], expansions: dict[str, Any], sizes: dict[str, int]) -> str:
    files = "\n".join(f"| `{name}` | {size:,} |" for name, size in sorted(sizes.items()))
    return f"""# Shipped FHIR R4 definitions

Generated from HL7's official FHIR packages; do not edit by hand.

| Package | Version |
|---|---|
| `{core.get("name")}` | {core.get("version")} |
| `{expansions.get("name")}` | {expansions.get("version")} |

Licence: the FHIR specification content is published by HL7 International under
[CC0-1.0](https://creativecommons.org/publicdomain/zero/1.0/) (public domain dedication).

Regenerate (from the repository root, packages in `../shared/fhir/`):

    python scripts/generate_definitions.py

or with explicit inputs:

    python scripts/generate_definitions.py --core PATH/hl7.fhir.r4.core-4.0.1.tgz \\
        --expansions PATH/hl7.fhir.r4.expansions-4.0.1.tgz --out fhir_server/definitions/data

Output is deterministic (sorted, gzip mtime 0): regenerating gives byte-identical files.

| File | Bytes |
|---|---|
{files}
"""


def generate(core_path: Path, expansions_path: Path, out_dir: Path) -> dict[str, int]:
    """Write every definition file into ``out_dir``; returns file name -> size in bytes."""
    core_manifest, core = _read_package(core_path)
    exp_manifest, expansions = _read_package(expansions_path)
    source = f"{core_manifest.get('name')}#{core_manifest.get('version')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    structure_defs = _by_url(list(_of_type(core, "StructureDefinition")))
    search_params = sorted(_of_type(core, "SearchParameter"), key=lambda s: s["id"])
    written = [
        _write(out_dir, "resource_types", _resource_types(structure_defs, source)),
        _write(out_dir, "search_parameters", [_search_parameter(sp) for sp in search_params]),
        _write(out_dir, "compartments", _compartments(core)),
        _write(
            out_dir,
            "structure_definitions",
            [_compact_structure_definition(sd) for sd in structure_defs],
            gzip_always=True,
        ),
        _write(
            out_dir,
            "value_sets",
            [_without_narrative(vs) for vs in _by_url(list(_of_type(core, "ValueSet")))],
            gzip_always=True,
        ),
        _write(
            out_dir,
            "code_systems",
            [_without_narrative(cs) for cs in _by_url(list(_of_type(core, "CodeSystem")))],
            gzip_always=True,
        ),
        _write(out_dir, "value_set_expansions", _expansions(expansions), gzip_always=True),
        _write(
            out_dir,
            "search_parameter_resources",
            [_without_narrative(sp) for sp in search_params],
            gzip_always=True,
        ),
        _write(
            out_dir,
            "operation_definitions",
            [_without_narrative(od) for od in _by_url(list(_of_type(core, "OperationDefinition")))],
            gzip_always=True,
        ),
    ]
    sizes = {p.name: p.stat().st_size for p in written}
    (out_dir / "SOURCE.md").write_text(_source_md(core_manifest, exp_manifest, sizes), encoding="utf-8")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=Path, default=_DEFAULT_CORE, help="hl7.fhir.r4.core package (.tgz)")
    parser.add_argument(
        "--expansions", type=Path, default=_DEFAULT_EXPANSIONS, help="hl7.fhir.r4.expansions package (.tgz)"
    )
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    sizes = generate(args.core, args.expansions, args.out)
    for name, size in sorted(sizes.items()):
        print(f"{size:>12,}  {name}")
    print(f"{sum(sizes.values()):>12,}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
