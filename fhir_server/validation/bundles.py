"""Bundle rules R4 states in prose (bundle.html) that no invariant carries.

The invariants (bdl-1 to bdl-12: total and search only in searchsets, request/response by type, unique
fullUrl, no versioned fullUrl, document/message shape) run as FHIRPath. Checked here:

* ``fullUrl`` is an absolute URL, or a well-formed ``urn:uuid:``/``urn:oid:`` ("The Absolute URL for
  the resource"; a relative one cannot identify the resource outside this Bundle);
* a RESTful ``fullUrl`` agrees with the resource: it ends in ``[type]/[id]`` ("fullUrl SHALL NOT
  disagree with the id in the resource");
* one resource once: two entries with the same type, id and version from the same server (outside
  history and batch bundles, whose entries are independent);
* searchsets: every entry that carries a matched or included resource has a ``fullUrl`` (R4: fullUrl
  "SHALL have a value" except on create and for unidentified operation results, such as the
  OperationOutcome of ``search.mode = outcome``), and no more matches than ``total`` says.
"""

from __future__ import annotations

import re
from typing import Any

Issue = dict[str, Any]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_UUID = re.compile(r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_OID = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")
_RESTFUL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def _issue(path: str, message: str, code: str = "invalid") -> Issue:
    return {"severity": "error", "code": code, "diagnostics": f"{path}: {message}", "expression": [path]}


def check(bundle: dict[str, Any], path: str) -> list[Issue]:
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    kind = bundle.get("type")
    issues: list[Issue] = []
    seen: dict[tuple[str, str, str, str | None], tuple[int, Any]] = {}
    matches = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        epath = f"{path}.entry[{i}]"
        full = entry.get("fullUrl")
        resource = entry.get("resource")
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        rid = resource.get("id") if isinstance(resource, dict) else None
        if isinstance(full, str):
            issues.extend(_full_url(full, rtype, rid, f"{epath}.fullUrl"))
        search = entry.get("search") if isinstance(entry.get("search"), dict) else {}
        if kind == "searchset" and isinstance(resource, dict):
            mode = search.get("mode")
            if mode in (None, "match"):
                matches += 1
            if full is None and mode != "outcome":
                issues.append(
                    _issue(
                        epath,
                        "An entry of a searchset needs a fullUrl: search results are identified resources "
                        "(R4 Bundle.entry.fullUrl)",
                        "required",
                    )
                )
        if (
            kind not in ("history", "batch", "batch-response")
            and isinstance(rtype, str)
            and isinstance(rid, str)
        ):
            meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
            version = meta.get("versionId") if isinstance(meta.get("versionId"), str) else None
            key = (_server(full), rtype, rid, version)
            if key in seen and (full is None or seen[key][1] != full):  # one fullUrl twice: bdl-7
                issues.append(
                    _issue(
                        f"{epath}.resource",
                        f"{rtype}/{rid} is already entry[{seen[key][0]}] of this Bundle; a resource may "
                        "appear only once (per version) in a Bundle",
                    )
                )
            seen.setdefault(key, (i, full))
    total = bundle.get("total")
    if kind == "searchset" and isinstance(total, int) and not isinstance(total, bool) and matches > total:
        issues.append(
            _issue(
                f"{path}.total",
                f"The searchset holds {matches} matches but total says {total}; total counts every match",
            )
        )
    return issues


def _server(full: Any) -> str:
    """The server part of a RESTful fullUrl ("" otherwise): the same id on two servers is two resources."""
    if not isinstance(full, str) or full.startswith("urn:"):
        return ""
    restful = _RESTFUL.search(full)
    return full[: restful.start()] if restful else full


def _full_url(full: str, rtype: str | None, rid: Any, path: str) -> list[Issue]:
    if full.startswith("urn:uuid:"):
        return [] if _UUID.match(full) else [_issue(path, f"{full!r} is not a valid urn:uuid: (R4 uuid)")]
    if full.startswith("urn:oid:"):
        return [] if _OID.match(full) else [_issue(path, f"{full!r} is not a valid urn:oid: (R4 oid)")]
    if not _SCHEME.match(full):
        return [
            _issue(
                path,
                f"fullUrl {full!r} is relative; it must be an absolute URL or a urn:uuid:/urn:oid: "
                "(R4 Bundle.entry.fullUrl)",
            )
        ]
    restful = _RESTFUL.search(full)
    known = isinstance(rtype, str) and isinstance(rid, str)
    if restful and known and (restful.group(1), restful.group(2)) != (rtype, rid):
        return [
            _issue(
                path,
                f"fullUrl {full!r} does not agree with the resource's identity {rtype}/{rid} "
                "(R4: fullUrl SHALL NOT disagree with the id in the resource)",
            )
        ]
    return []
