"""The golden record's content, derived from its linked source records (survivorship).

Only identity is merged: national identifiers, names (and nicknames), sex, birth date, multiple-birth
order, addresses and guardians (relationship, name, CID). Clinical and social content, telecom and
agency-local record numbers (HN, student number) stay in the agencies' own records. Each element
names the sources it came from (``th-identity-source``). Where sources disagree on a single value,
the value most sources give wins, ties going to the source linked first.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhir_server import canonical
from fhir_server.identity import blocking
from fhir_server.identity import features as feat
from fhir_server.identity import identifiers as ids
from fhir_server.identity.model import (
    BLOCK_SYSTEM,
    GOLDEN,
    GUARDIAN_ID_EXT,
    NOT_MATCH_EXT,
    RETIRED,
    REVIEW,
    SOURCE_EXT,
    TAG_SYSTEM,
    GoldenState,
    patient_ref,
)

_LANGUAGE_EXT = "http://hl7.org/fhir/StructureDefinition/language"
_PREFIX_EXT = canonical.structure_definition(canonical.EXT_NAME_PREFIX)
_NAME_EXTENSIONS = (_LANGUAGE_EXT, _PREFIX_EXT)
_TYPE_SYSTEM = canonical.code_system(canonical.CS_IDENTIFIER_TYPE)
_TYPE_DISPLAY = {
    ids.CID: "เลขประจำตัวประชาชน",
    ids.GCODE: "รหัส G",
    ids.PASSPORT: "หนังสือเดินทาง",
    ids.NEWBORN: "เลขประจำตัวชั่วคราวของทารกแรกเกิด",
}
_DISPLAY = {
    GOLDEN: "Golden record (server-managed identity of one child)",
    RETIRED: "Golden record merged into another",
    REVIEW: "Probable duplicates waiting for a data steward",
}

Sources = dict[str, dict[str, Any]]  # source Patient id -> its current content
Guardians = dict[str, list[tuple[str, dict[str, Any]]]]  # source id -> [(RelatedPerson id, content)]


def _provenance(sources: list[str], kind: str = "Patient") -> list[dict[str, Any]]:
    return [{"url": SOURCE_EXT, "valueReference": {"reference": f"{kind}/{s}"}} for s in sources]


def _vote(values: list[tuple[Any, str]]) -> tuple[Any, list[str]] | None:
    """The value most sources give (ties: the first given), with the sources that give it."""
    if not values:
        return None
    counts = Counter(v for v, _ in values)
    best = max(counts.values())
    winner = next(v for v, _ in values if counts[v] == best)
    return winner, [s for v, s in values if v == winner]


def _identifiers(order: list[str], sources: Sources) -> list[dict[str, Any]]:
    found: dict[ids.NationalId, list[str]] = {}
    for sid in order:
        for nid in ids.national_ids(sources[sid]):
            found.setdefault(nid, []).append(sid)
    out = []
    for nid in sorted(found, key=lambda n: (ids.STRENGTH[n.kind], n.value)):
        out.append(
            {
                "extension": _provenance(found[nid]),
                "use": "official",
                "type": {
                    "coding": [{"system": _TYPE_SYSTEM, "code": nid.kind, "display": _TYPE_DISPLAY[nid.kind]}]
                },
                "system": nid.system,
                "value": nid.value,
            }
        )
    return out


def _clean_name(name: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in name.items() if k in ("use", "text", "family", "given", "prefix", "suffix")}
    extensions = [
        e for e in name.get("extension", []) if isinstance(e, dict) and e.get("url") in _NAME_EXTENSIONS
    ]
    return {**({"extension": extensions} if extensions else {}), **kept}


def _name_key(name: dict[str, Any]) -> tuple[str, ...]:
    names, nicknames = feat.read_names({"name": [name]})
    if nicknames:
        return ("nickname", *sorted(nicknames))
    if not names:
        return ("text", str(name.get("text", "")))
    n = names[0]
    return (
        "name",
        n.given.thai or n.given.latin,
        n.family.thai or n.family.latin,
        "th" if n.given.thai else "en",
    )


def _names(order: list[str], sources: Sources) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], tuple[dict[str, Any], list[str]]] = {}
    for sid in order:
        for name in sources[sid].get("name", []) if isinstance(sources[sid].get("name"), list) else []:
            if not isinstance(name, dict):
                continue
            key = _name_key(name)
            if key in groups:
                groups[key][1].append(sid)
            else:
                groups[key] = (_clean_name(name), [sid])
    ranked = sorted(groups.values(), key=lambda g: (g[0].get("use") == "nickname", -len(g[1])))
    out = []
    for name, given_by in ranked:
        extensions = [*name.get("extension", []), *_provenance(given_by)]
        out.append({**name, "extension": extensions})
    return out


def _primitive(order: list[str], sources: Sources, read: Any) -> tuple[Any, dict[str, Any]] | None:
    values = [(v, sid) for sid in order if (v := read(sources[sid])) is not None]
    voted = _vote(values)
    if voted is None:
        return None
    value, given_by = voted
    return value, {"extension": _provenance(given_by)}


def _birth(resource: dict[str, Any]) -> str | None:
    born = feat.parse_birth(resource.get("birthDate"))
    return born.isoformat() if born else None


def _gender(resource: dict[str, Any]) -> str | None:
    value = resource.get("gender")
    return value if isinstance(value, str) else None


def _multiple_birth(resource: dict[str, Any]) -> tuple[str, Any] | None:
    for key in ("multipleBirthInteger", "multipleBirthBoolean"):
        if isinstance(resource.get(key), bool | int):
            return key, resource[key]
    return None


def _address_key(address: dict[str, Any]) -> tuple[str, ...]:
    subdistricts, districts = feat.address_codes({"address": [address]})
    line = (
        " ".join(x for x in address.get("line", []) if isinstance(x, str))
        if isinstance(address.get("line"), list)
        else ""
    )
    return (
        ",".join(sorted(subdistricts)) or ",".join(sorted(districts)),
        feat.thai_key(line) or line.lower(),
        str(address.get("postalCode", "")),
        str(address.get("text", "")) if not line else "",
    )


def _addresses(order: list[str], sources: Sources) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], tuple[dict[str, Any], list[str]]] = {}
    for sid in order:
        for address in (
            sources[sid].get("address", []) if isinstance(sources[sid].get("address"), list) else []
        ):
            if not isinstance(address, dict):
                continue
            key = _address_key(address)
            if key in groups:
                groups[key][1].append(sid)
            else:
                groups[key] = ({k: v for k, v in address.items() if k != "id"}, [sid])
    out = []
    for address, given_by in groups.values():
        extensions = [
            e for e in address.get("extension", []) if isinstance(e, dict) and e.get("url") != SOURCE_EXT
        ]
        out.append({**address, "extension": [*extensions, *_provenance(given_by)]})
    return out


def _guardians(order: list[str], guardians: Guardians) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for sid in order:
        for person_id, person in guardians.get(sid, []):
            cids = [n for n in ids.national_ids(person) if n.kind == ids.CID]
            names: list[Any] = person["name"] if isinstance(person.get("name"), list) else []
            name = next((n for n in names if isinstance(n, dict)), None)
            if cids:
                key = "cid:" + cids[0].value
            else:
                parsed, _ = feat.read_names({"name": [name]} if name else {})
                given = parsed[0].given.thai or parsed[0].given.latin if parsed else person_id
                key = "name:" + given
            entry = groups.get(key)
            if entry is None:
                contact: dict[str, Any] = {"extension": []}
                if cids:
                    contact["extension"].append(
                        {"url": GUARDIAN_ID_EXT, "valueIdentifier": cids[0].identifier()}
                    )
                relationship = person.get("relationship")
                if isinstance(relationship, list) and relationship:
                    contact["relationship"] = relationship
                if name:
                    contact["name"] = _clean_name(name)
                entry = groups[key] = contact
            entry["extension"].append(
                {"url": SOURCE_EXT, "valueReference": {"reference": f"RelatedPerson/{person_id}"}}
            )
    return list(groups.values())


def build(state: GoldenState, sources: Sources, guardians: Guardians) -> dict[str, Any]:
    """The golden Patient for ``state`` (without id and meta versioning, which the write path sets)."""
    tags = [{"system": TAG_SYSTEM, "code": RETIRED if state.retired else GOLDEN, "display": ""}]
    if state.candidates and not state.retired:
        tags.append({"system": TAG_SYSTEM, "code": REVIEW, "display": ""})
    for tag in tags:
        tag["display"] = _DISPLAY[tag["code"]]
    resource: dict[str, Any] = {"resourceType": "Patient", "meta": {"tag": tags}}
    extensions = [{"url": NOT_MATCH_EXT, "valueReference": patient_ref(o)} for o in sorted(state.not_match)]
    if extensions:
        resource["extension"] = extensions
    order = [s for s in state.sources() if s in sources]
    if state.retired:
        resource["active"] = False
        resource["link"] = [{"other": patient_ref(state.replaced_by or ""), "type": "replaced-by"}]
        return resource
    identifiers = _identifiers(order, sources)
    if identifiers:
        resource["identifier"] = identifiers
    resource["active"] = True
    names = _names(order, sources)
    if names:
        resource["name"] = names
    for key, read in (("gender", _gender), ("birthDate", _birth)):
        voted = _primitive(order, sources, read)
        if voted is not None:
            resource[key], resource[f"_{key}"] = voted
    multiple = _vote([(m, sid) for sid in order if (m := _multiple_birth(sources[sid])) is not None])
    if multiple is not None:
        (key, value), _ = multiple
        resource[key] = value
    addresses = _addresses(order, sources)
    if addresses:
        resource["address"] = addresses
    contacts = _guardians(order, guardians)
    if contacts:
        resource["contact"] = contacts
    links = [link.to_fhir() for link in state.links]
    links += [{"other": patient_ref(o), "type": "replaces"} for o in state.replaces]
    if links:
        resource["link"] = links
    keys = blocking.golden_keys(feat.features(resource))
    tags.extend({"system": BLOCK_SYSTEM, "code": key} for key in keys)
    return resource
