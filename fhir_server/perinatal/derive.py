"""Risk flags (and the developmental follow-up they propose) written in the same transaction as the
records they rest on.

Why on write, like the wellbeing scores: every writer gets them (43-file imports, FHIR bundles from a
hospital, the generator's data when loaded), they commit or fail with their source, and they are
searchable at once (``Observation?code=https://termtem.org/fhir/CodeSystem/th-perinatal-risk|preterm``).

- A newborn's birth observation (birth weight, gestational age at birth, Apgar at 1 minute: LOINC
  codes, whichever profile) gives or withdraws its flag: low birth weight, preterm, birth asphyxia.
- A pregnancy, an antenatal visit or a delivery re-assesses its pregnancy: teenage mother, late first
  antenatal visit, too few antenatal visits (``flags.pregnancy_flags``).
- A flag that no longer holds (a corrected weight, a visit found later, a deleted record) is marked
  ``entered-in-error``; nothing reads a stale flag.
- A low-birth-weight or asphyxia flag proposes one developmental follow-up (DAIM) for the child: a
  ``ServiceRequest`` with status ``draft`` and intent ``proposal``, the flags as its reasons. The
  referral workflow picks it up (makes it a referral to an agency); once it has left ``draft`` the
  server never touches it again. When no flag holds any more, a still-draft proposal is ``revoked``.

Derived ids come from the source's id and the flag code, so recomputing updates the same resources and
a re-import that changes nothing writes nothing. Reads and searches go through the write's own
transaction, so with auth on they see what the writing agency may see, and the derived resources carry
its writing-agency tag like anything else it writes.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.interactions import writes
from fhir_server.perinatal import flags, model
from fhir_server.perinatal.rules import rules
from fhir_server.storage.base import StoredResource, StoreTransaction

_NAMESPACE = uuid.UUID("3f6b8f0e-6a7c-5d2a-9c1e-22b0a7d4c915")
_TYPES = frozenset({"Observation", "EpisodeOfCare", "Encounter", "Procedure"})
_PAGE = 500
_REFERRAL_CATEGORY = canonical.code_system(canonical.CS_REFERRAL_CATEGORY)
_SCREENING_TOOL = canonical.code_system(canonical.CS_SCREENING_TOOL)


def flag_id(source: str, code: str) -> str:
    """The id of the flag ``code`` derived from ``source`` ("Observation/x" or "EpisodeOfCare/y")."""
    return str(uuid.uuid5(_NAMESPACE, f"{source}:{code}"))


def proposal_id(patient_id: str) -> str:
    """The id of the developmental follow-up proposed for a child."""
    return str(uuid.uuid5(_NAMESPACE, f"follow-up:Patient/{patient_id}"))


async def on_written(tx: StoreTransaction, stored: StoredResource, resource: dict[str, Any]) -> None:
    """After a version is stored: derive (or withdraw) the flags that rest on it."""
    if stored.resource_type not in _TYPES:
        return
    if stored.resource_type == "Observation":
        if model.newborn_measure(resource) is not None:
            await _newborn(tx, stored, {**resource, "id": stored.id})
        return
    for episode in _episodes_of(stored, resource):
        await assess_pregnancy(tx, episode)


async def on_deleted(tx: StoreTransaction, current: StoredResource) -> None:
    """After a deletion: withdraw what rested on the deleted version."""
    if current.resource_type not in _TYPES or not current.body:
        return
    resource = orjson.loads(current.body)
    if current.resource_type == "Observation":
        if model.newborn_measure(resource) is not None:
            await _newborn(tx, current, {**resource, "status": "entered-in-error"})
        return
    for episode in _episodes_of(current, resource):
        await assess_pregnancy(tx, episode)


def _episodes_of(stored: StoredResource, resource: dict[str, Any]) -> list[str]:
    if model.is_pregnancy(resource):
        return [stored.id]
    if model.is_antenatal_visit(resource) or model.is_delivery(resource):
        return model.episode_ids(resource)
    return []


# --- the newborn's flags ---------------------------------------------------------------------------


async def _newborn(tx: StoreTransaction, stored: StoredResource, observation: dict[str, Any]) -> None:
    source = f"Observation/{stored.id}"
    result = flags.newborn_flag(observation, source)
    child = model.ref_id(observation.get("subject"), "Patient")
    if result is None or child is None:
        return
    code, flag = result
    fid = flag_id(source, code)
    if flag is None:
        changed = await _retract(tx, "Observation", fid)
    else:
        when = flag.on or stored.last_updated
        changed = await _put(tx, _flag_resource(fid, flag, {"reference": f"Patient/{child}"}, when, None))
    if changed and code in rules().follow_up_for:
        await _propose_follow_up(tx, child)


async def _propose_follow_up(tx: StoreTransaction, child: str) -> None:
    """One draft proposal per child while any follow-up flag holds; revoked (if still a draft) after."""
    limits = rules()
    codes = ",".join(f"{model.RISK_SYSTEM}|{c}" for c in sorted(limits.follow_up_for))
    holding = [
        r
        for r in await _search(tx, "Observation", [("subject", f"Patient/{child}"), ("code", codes)])
        if r.get("status") == "final" and r.get("valueBoolean") is True
    ]
    pid = proposal_id(child)
    current = await tx.read("ServiceRequest", pid)
    existing = orjson.loads(current.body) if current is not None and not current.deleted else None
    if existing is not None and existing.get("status") not in ("draft", "revoked"):
        return  # taken up by the referral workflow: no longer ours to change
    if not holding:
        if existing is not None and existing.get("status") == "draft":
            await _put(tx, {**existing, "status": "revoked"})
        return
    reasons = sorted(f"Observation/{r['id']}" for r in holding)
    found = ", ".join(sorted(c["code"] for r in holding for c in r["code"]["coding"]))
    await _put(
        tx,
        {
            "resourceType": "ServiceRequest",
            "id": pid,
            "status": "draft",
            "intent": "proposal",
            "category": [
                {"coding": [{"system": _REFERRAL_CATEGORY, "code": "development", "display": "พัฒนาการ"}]}
            ],
            "code": {
                "coding": [{"system": _SCREENING_TOOL, "code": limits.follow_up_tool}],
                "text": "ติดตามพัฒนาการเด็กกลุ่มเสี่ยง (Developmental follow-up of an at-risk infant)",
            },
            "subject": {"reference": f"Patient/{child}"},
            "reasonReference": [{"reference": r} for r in reasons],
            "note": [
                {
                    "text": f"Proposed by the server from perinatal risk flags ({found}); a referral agency "
                    "takes it up through the referral workflow."
                }
            ],
        },
    )


# --- the pregnancy's flags -------------------------------------------------------------------------


async def assess_pregnancy(tx: StoreTransaction, episode_id: str) -> None:
    """Recompute the teenage-mother, late-first-visit and too-few-visits flags of one pregnancy."""
    source = f"EpisodeOfCare/{episode_id}"
    stored = await tx.read("EpisodeOfCare", episode_id)
    episode = orjson.loads(stored.body) if stored is not None and not stored.deleted else None
    mother_id = model.ref_id(episode.get("patient"), "Patient") if episode else None
    usable = episode is not None and model.is_pregnancy(episode) and model.is_active(episode)
    if episode is None or mother_id is None or not usable:
        for code in model.PREGNANCY_FLAGS:
            await _retract(tx, "Observation", flag_id(source, code))
        return
    mother_stored = await tx.read("Patient", mother_id)
    mother = (
        orjson.loads(mother_stored.body) if mother_stored is not None and not mother_stored.deleted else None
    )
    encounters = await _search(tx, "Encounter", [("episode-of-care", source)])
    visits = [v for e in encounters if model.is_antenatal_visit(e) and (v := flags.visit_of(e))]
    procedures = await _search(
        tx, "Procedure", [("subject", f"Patient/{mother_id}"), ("code", f"{model.EVENT_SYSTEM}|delivery")]
    )
    deliveries = [p for p in procedures if model.is_active(p) and episode_id in model.episode_ids(p)]
    found = flags.pregnancy_flags(episode, mother, visits, deliveries)
    for code in model.PREGNANCY_FLAGS:
        fid = flag_id(source, code)
        flag = found.get(code)
        if flag is None:
            await _retract(tx, "Observation", fid)
            continue
        when = flag.on or (stored.last_updated if stored is not None else None)
        await _put(tx, _flag_resource(fid, flag, {"reference": f"Patient/{mother_id}"}, when, episode_id))


# --- writing ---------------------------------------------------------------------------------------


def _flag_resource(
    fid: str, flag: flags.Flag, subject: dict[str, str], when: str | None, episode_id: str | None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": fid,
        "meta": {"profile": [model.RISK_PROFILE]},
    }
    if episode_id is not None:
        resource["extension"] = [
            {"url": model.WORKFLOW_EPISODE, "valueReference": {"reference": f"EpisodeOfCare/{episode_id}"}}
        ]
    resource.update(
        {
            "status": "final",
            "code": {
                "coding": [
                    {"system": model.RISK_SYSTEM, "code": flag.code, "display": model.RISK_DISPLAY[flag.code]}
                ]
            },
            "subject": subject,
            "effectiveDateTime": when,
            "valueBoolean": True,
            "derivedFrom": [{"reference": r} for r in flag.derived_from],
            "note": [{"text": f"Computed by the server: {flag.reason}."}],
        }
    )
    return resource


async def _search(
    tx: StoreTransaction, resource_type: str, params: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    from fhir_server.search.query import parse_search

    query = parse_search(
        resource_type,
        [*params, ("_count", str(_PAGE))],
        base_url="",
        strict=True,
        default_count=_PAGE,
        max_count=_PAGE,
    )
    page = await tx.search(query)
    return [{**orjson.loads(s.body), "id": s.id} for s in page.matches]


async def _put(tx: StoreTransaction, resource: dict[str, Any]) -> bool:
    """Store ``resource`` under its id unless already stored unchanged; True when a version was written."""
    resource_type, id_ = resource["resourceType"], resource["id"]
    current = await tx.read(resource_type, id_)
    if writes.unchanged(current, resource, None):
        return False
    # A new derived resource is a create under an id the server chose (never an agency's update-as-create).
    method = "POST" if current is None else "PUT"
    await writes.write_version(tx, resource_type, id_, resource, None, current=current, method=method)
    return True


async def _retract(tx: StoreTransaction, resource_type: str, id_: str) -> bool:
    """Mark a derived resource that no longer holds as entered in error; True when it changed."""
    current = await tx.read(resource_type, id_)
    if current is None or current.deleted:
        return False
    resource = orjson.loads(current.body)
    if resource.get("status") == "entered-in-error":
        return False
    resource["status"] = "entered-in-error"
    await writes.write_version(tx, resource_type, id_, resource, None, current=current, method="PUT")
    return True
