"""Snapshot generation: merge a differential StructureDefinition onto its base's snapshot.

Handles what our profiles use: constraining existing elements, constraining children of a datatype
element (the datatype's elements are expanded under it first), slices (a slice starts as a copy of the
sliced element and its descendants) and constraints inside slices. Bases are R4 core definitions or our
own profiles (``bases`` lets the generator pass already-generated ones).
"""

from __future__ import annotations

import copy
from typing import Any

from fhir_server import definitions

_MERGE_SKIP = frozenset({"id", "path", "sliceName", "constraint", "type", "base"})


class SnapshotError(ValueError):
    """A differential that cannot be applied to its base; ``index`` is the differential element's."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def _base_elements(url: str, bases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    if url in bases:
        return copy.deepcopy(bases[url]["snapshot"]["element"])
    sd = definitions.structure_definition(url)
    if sd is None:
        raise ValueError(f"Unknown base definition {url}")
    return copy.deepcopy(sd["elements"])


def _descendant_of(el_id: str, parent_id: str) -> bool:
    return el_id.startswith(parent_id + ".") or el_id.startswith(parent_id + ":")


def _last_index_of_family(elements: list[dict[str, Any]], el_id: str) -> int:
    """Index of the last element that is ``el_id`` or belongs to it (children, slices)."""
    last = -1
    for i, el in enumerate(elements):
        if el["id"] == el_id or _descendant_of(el["id"], el_id):
            last = i
    return last


def _rebase(
    children: list[dict[str, Any]], old_id: str, new_id: str, old_path: str, new_path: str
) -> list[dict[str, Any]]:
    out = []
    for el in children:
        el = copy.deepcopy(el)
        el["id"] = new_id + el["id"][len(old_id) :]
        el["path"] = new_path + el["path"][len(old_path) :]
        out.append(el)
    return out


def _parent_and_last(el_id: str) -> tuple[str, str]:
    parent, _, last = el_id.rpartition(".")
    return parent, last


def _expand_type(elements: list[dict[str, Any]], parent_idx: int) -> None:
    """Insert the element list of the parent's (single) datatype under it."""
    parent = elements[parent_idx]
    types = parent.get("type") or []
    if len(types) != 1:
        raise ValueError(f"Cannot expand children of {parent['id']}: needs exactly one type")
    code = types[0]["code"]
    profile = (types[0].get("profile") or [None])[0]
    tsd = definitions.structure_definition(profile or code) or definitions.structure_definition(code)
    if tsd is None:
        raise ValueError(f"Unknown type {code} for {parent['id']}")
    root = tsd["elements"][0]
    kids = [e for e in tsd["elements"][1:]]
    kids = _rebase(kids, root["id"], parent["id"], root["path"], parent["path"])
    for el in kids:
        for c in el.get("constraint", ()):
            c.setdefault("source", tsd["url"])
    elements[parent_idx + 1 : parent_idx + 1] = kids


def _find_or_create(elements: list[dict[str, Any]], el_id: str) -> int:
    for i, el in enumerate(elements):
        if el["id"] == el_id:
            return i
    parent_id, last = _parent_and_last(el_id)
    if ":" in last:  # a new slice of parent_id.name
        name, slice_name = last.split(":", 1)
        sliced_id = f"{parent_id}.{name}" if parent_id else name
        base_idx = _find_or_create(elements, sliced_id)
        base = elements[base_idx]
        # the sliced element's descendants, nested slices included (not its own slices: those are siblings)
        family = [e for e in elements if e["id"].startswith(sliced_id + ".")]
        new = copy.deepcopy(base)
        new.pop("slicing", None)
        new["id"] = el_id
        new["sliceName"] = slice_name
        kids = _rebase(family, sliced_id, el_id, base["path"], base["path"])
        at = _last_index_of_family(elements, sliced_id) + 1
        elements[at:at] = [new, *kids]
        return at
    parent_idx = _find_or_create(elements, parent_id)
    if not any(
        _descendant_of(e["id"], parent_id) and e["id"].count(".") == parent_id.count(".") + 1
        for e in elements
    ):
        _expand_type(elements, parent_idx)
    for i, el in enumerate(elements):
        if el["id"] == el_id:
            return i
    raise ValueError(f"Differential element {el_id} does not exist in the base")


def _check_slice(elements: list[dict[str, Any]], el_id: str) -> None:
    """A slice needs a repeating element that declares its slicing (R4 profiling: "slicing ... SHALL be
    defined on the first element"); extensions are sliced by url implicitly."""
    parent_id, last = _parent_and_last(el_id)
    if ":" not in last:
        return
    name = last.split(":", 1)[0]
    sliced_id = f"{parent_id}.{name}" if parent_id else name
    sliced = next((e for e in elements if e["id"] == sliced_id), None)
    if sliced is None:
        return
    if name in ("extension", "modifierExtension") or sliced["path"].endswith("[x]"):
        return
    if sliced.get("max") == "1" and (sliced.get("base") or {}).get("max", sliced.get("max")) == "1":
        raise ValueError(f"{el_id} slices {sliced_id}, which does not repeat (max 1)")
    if "slicing" not in sliced:
        raise ValueError(f"{el_id} is a slice of {sliced_id}, which declares no slicing (discriminator)")


def _merge(target: dict[str, Any], diff: dict[str, Any], sd_url: str) -> None:
    if any(k.startswith(("fixed", "pattern")) for k in diff):
        for k in [k for k in target if k.startswith(("fixed", "pattern"))]:
            del target[k]
    for k, v in diff.items():
        if k in _MERGE_SKIP:
            continue
        target[k] = copy.deepcopy(v)
    if "type" in diff:
        target["type"] = copy.deepcopy(diff["type"])
    if "constraint" in diff:
        existing = {c["key"] for c in target.get("constraint", [])}
        target.setdefault("constraint", [])
        for c in diff["constraint"]:
            if c["key"] in existing:
                continue
            c = copy.deepcopy(c)
            c.setdefault("source", sd_url)
            target["constraint"].append(c)


def generate_snapshot(
    differential_sd: dict[str, Any], bases: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The StructureDefinition with ``snapshot.element`` generated from its base and differential."""
    sd = copy.deepcopy(differential_sd)
    elements = _base_elements(sd["baseDefinition"], bases or {})
    for el in elements:  # say where inherited rules come from (the compact base omits its own url)
        for c in el.get("constraint", ()):
            c.setdefault("source", sd["baseDefinition"])
    for n, diff in enumerate(sd.get("differential", {}).get("element", [])):
        el_id = diff.get("id") or diff["path"]
        try:
            idx = _find_or_create(elements, el_id)
            _check_slice(elements, el_id)
        except SnapshotError:
            raise
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SnapshotError(str(exc), n) from None
        _merge(elements[idx], diff, sd["url"])
        if "sliceName" in diff:
            elements[idx]["sliceName"] = diff["sliceName"]
    for el in elements:
        _complete(el)
    sd["snapshot"] = {"element": elements}
    return sd


def _complete(el: dict[str, Any]) -> None:
    """Fill what a snapshot element must carry (sdf-3, sdf-10) but the compact base definitions omit."""
    base_path = (el.get("base") or {}).get("path", el["path"])
    if "definition" not in el:
        el["definition"] = el.get("short") or f"As {base_path} in the FHIR R4 base definition."
    binding = el.get("binding")
    if binding is not None and "valueSet" not in binding and "description" not in binding:
        binding["description"] = f"As the binding of {base_path} in the FHIR R4 base definition."
