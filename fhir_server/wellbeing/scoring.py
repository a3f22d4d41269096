"""Scoring a completed flower QuestionnaireResponse into Observations, inside the write that stores it.

Why on write, in the same transaction: the scores can never disagree with the response (they commit
or fail together, a rejected response leaves no score behind), clients need nothing but an ordinary
create, update or transaction bundle, and the scores are searchable (``Observation?code=...``) the
moment the response is. Each dimension's level is the worst rating among its questions; the overall
level is the worst dimension. An update re-scores; a response that is no longer completed (or is
deleted) marks its scores ``entered-in-error``, so nothing reads stale levels.

Observation ids are derived from the response id and the code, so re-scoring updates the same
resources. A response the scorer cannot read (a dimension or required question missing, an answer
that is not one of the question's options) is refused with 422 naming the item.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.interactions import writes
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import StoredResource, StoreTransaction
from fhir_server.wellbeing.questionnaire import QUESTIONNAIRE_URL, dimensions

SCORE_PROFILE = canonical.structure_definition(canonical.PROFILE_WELLBEING_SCORE)
LEVEL_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_LEVEL)
DIMENSION_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_DIMENSION)
SCORE_SYSTEM = canonical.code_system(canonical.CS_WELLBEING_SCORE)
_SCORED_STATUSES = ("completed", "amended")
_NAMESPACE = uuid.UUID("4b1b3a52-0c1c-4d8e-9a53-7e0f1d2b6a11")
_CATEGORY = [
    {
        "coding": [
            {
                "system": canonical.OBSERVATION_CATEGORY_SYSTEM,
                "code": "social-history",
                "display": "Social History",
            }
        ]
    }
]


def is_flower(response: dict[str, Any]) -> bool:
    canonical_ref = response.get("questionnaire")
    return isinstance(canonical_ref, str) and canonical_ref.split("|", 1)[0] == QUESTIONNAIRE_URL


def _where(*link_ids: str) -> str:
    return "QuestionnaireResponse" + "".join(f".item.where(linkId='{i}')" for i in link_ids)


def _unscorable(message: str, *link_ids: str) -> FhirError:
    return FhirError(
        422,
        f"The wellbeing flower cannot be scored: {message}",
        code="required",
        expression=[_where(*link_ids)],
    )


def _items(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in node.get("item", []) if isinstance(node.get("item"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("linkId"), str):
            found.setdefault(item["linkId"], item)
    return found


def score(response: dict[str, Any]) -> tuple[dict[str, str], str]:
    """({dimension code: level code}, overall level) of a flower response; 422 naming the item it
    cannot score."""
    answered = _items(response)
    levels: dict[str, str] = {}
    for dimension in dimensions():
        group = answered.get(dimension.link_id)
        if group is None:
            raise _unscorable(f"the dimension '{dimension.link_id}' is not answered", dimension.link_id)
        given = _items(group)
        ratings = []
        for question in dimension.questions:
            item = given.get(question.link_id)
            answers = item.get("answer") if item is not None else None
            if not isinstance(answers, list) or not answers:
                if question.required:
                    raise _unscorable(
                        f"the question '{question.link_id}' has no answer",
                        dimension.link_id,
                        question.link_id,
                    )
                continue
            if len(answers) > 1:
                raise _unscorable(
                    f"the question '{question.link_id}' takes one answer", dimension.link_id, question.link_id
                )
            coding = answers[0].get("valueCoding") if isinstance(answers[0], dict) else None
            code = coding.get("code") if isinstance(coding, dict) else None
            if (
                not isinstance(coding, dict)
                or coding.get("system") != LEVEL_SYSTEM
                or code not in question.options
            ):
                raise _unscorable(
                    f"the answer to '{question.link_id}' is not one of its options"
                    f" ({', '.join(question.options)})",
                    dimension.link_id,
                    question.link_id,
                )
            ratings.append(code)
        if not ratings:
            raise _unscorable(f"the dimension '{dimension.link_id}' has no rating", dimension.link_id)
        levels[dimension.code] = max(ratings, key=dimension.order.index)
    order = dimensions()[0].order if dimensions() else ()
    overall = max(levels.values(), key=order.index)
    return levels, overall


def _observation_id(response_id: str, code: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{response_id}:{code}"))


def _observations(stored: StoredResource, response: dict[str, Any]) -> list[dict[str, Any]]:
    levels, overall = score(response)
    subject = response.get("subject")
    if not isinstance(subject, dict) or not str(subject.get("reference", "")).startswith(
        ("Patient/", "urn:uuid:")
    ):
        raise FhirError(
            422,
            "The wellbeing flower cannot be scored:"
            " QuestionnaireResponse.subject must name the child (a Patient)",
            code="required",
            expression=["QuestionnaireResponse.subject"],
        )
    stamped = orjson.loads(stored.body)
    performer = response.get("author")
    if not isinstance(performer, dict):
        owner = next(
            (
                t.get("code")
                for t in stamped.get("meta", {}).get("tag", [])
                if str(t.get("system", "")).endswith("/tag/writing-agency")
            ),
            None,
        )
        performer = {"reference": owner} if owner else None
    when = response.get("authored") if isinstance(response.get("authored"), str) else stored.last_updated
    out = []
    codes = [(DIMENSION_SYSTEM, d, lv) for d, lv in levels.items()] + [(SCORE_SYSTEM, "overall", overall)]
    for system, code, level in codes:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _observation_id(stored.id, code),
            "meta": {"profile": [SCORE_PROFILE]},
            "status": "final",
            "category": _CATEGORY,
            "code": {"coding": [{"system": system, "code": code}]},
            "subject": subject,
            "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": LEVEL_SYSTEM, "code": level}]},
            "derivedFrom": [{"reference": f"QuestionnaireResponse/{stored.id}"}],
        }
        if performer:
            obs["performer"] = [performer]
        out.append(obs)
    return out


async def _put(tx: StoreTransaction, observation: dict[str, Any]) -> None:
    current = await tx.read("Observation", observation["id"])
    if writes.unchanged(current, observation, None):
        return
    await writes.write_version(
        tx, "Observation", observation["id"], observation, None, current=current, method="PUT"
    )


async def _retract(tx: StoreTransaction, response_id: str) -> None:
    """Mark the scores of a response that no longer stands as entered in error."""
    for dimension in [*(d.code for d in dimensions()), "overall"]:
        current = await tx.read("Observation", _observation_id(response_id, dimension))
        if current is None or current.deleted:
            continue
        observation = orjson.loads(current.body)
        if observation.get("status") == "entered-in-error":
            continue
        observation["status"] = "entered-in-error"
        await writes.write_version(
            tx, "Observation", current.id, observation, None, current=current, method="PUT"
        )


async def on_written(tx: StoreTransaction, stored: StoredResource, response: dict[str, Any]) -> None:
    """After a QuestionnaireResponse version is stored: (re-)score it, or retract its scores."""
    if not is_flower(response):
        return
    if response.get("status") in _SCORED_STATUSES:
        for observation in _observations(stored, response):
            await _put(tx, observation)
    else:
        await _retract(tx, stored.id)


async def on_deleted(tx: StoreTransaction, current: StoredResource) -> None:
    if current.body and is_flower(orjson.loads(current.body)):
        await _retract(tx, current.id)
