"""A small pregnancy written as FHIR: a mother, her pregnancy with antenatal visits and a delivery, and
a newborn with its birth record (the shapes the 43-file mapper and the generator write)."""

from __future__ import annotations

from typing import Any

from fhir_server import canonical

SD = canonical.structure_definition
EVENT = canonical.code_system(canonical.CS_PERINATAL_EVENT)
UCUM = canonical.UCUM_SYSTEM
MOTHER = "urn:uuid:8b0f5d1e-0000-4000-8000-000000000001"
CHILD = "urn:uuid:8b0f5d1e-0000-4000-8000-000000000002"
EPISODE = "urn:uuid:8b0f5d1e-0000-4000-8000-000000000003"
BIRTH = "urn:uuid:8b0f5d1e-0000-4000-8000-000000000004"
WEIGHT = "urn:uuid:8b0f5d1e-0000-4000-8000-000000000005"


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    request = {"method": "POST", "url": resource["resourceType"]}
    return {"fullUrl": full_url, "resource": resource, "request": request}


def mother(birth_date: str = "2006-08-01") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": canonical.CID_SYSTEM, "value": "1103700123466"}],
        "name": [{"family": "ศรีสุข", "given": ["สมศรี"]}],
        "gender": "female",
        "birthDate": birth_date,
    }


def child() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "meta": {"profile": [SD(canonical.PROFILE_CHILD_PATIENT)]},
        "identifier": [{"system": canonical.NEWBORN_ID_SYSTEM, "value": "1103700123466-20250218-1"}],
        "name": [{"family": "ศรีสุข", "given": ["บุตรนางสมศรี"]}],
        "gender": "female",
        "birthDate": "2025-02-18",
    }


def episode(mother_ref: str = MOTHER, status: str = "finished") -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "meta": {"profile": [SD(canonical.PROFILE_PREGNANCY)]},
        "extension": [
            {"url": SD(canonical.EXT_GRAVIDA), "valuePositiveInt": 1},
            {"url": SD(canonical.EXT_LAST_MENSTRUAL_PERIOD), "valueDate": "2024-05-20"},
            {"url": SD(canonical.EXT_ESTIMATED_DELIVERY_DATE), "valueDate": "2025-02-24"},
        ],
        "status": status,
        "type": [{"coding": [{"system": EVENT, "code": "pregnancy"}]}],
        "patient": {"reference": mother_ref},
        "period": {"start": "2024-05-20", "end": "2025-02-18"},
    }


def antenatal(on: str, weeks: int, episode_ref: str = EPISODE, mother_ref: str = MOTHER) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "meta": {"profile": [SD(canonical.PROFILE_ANTENATAL_VISIT)]},
        "extension": [
            {
                "url": SD(canonical.EXT_GESTATIONAL_AGE),
                "valueQuantity": {"value": weeks, "unit": "wk", "system": UCUM, "code": "wk"},
            }
        ],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": EVENT, "code": "antenatal"}]}],
        "subject": {"reference": mother_ref},
        "episodeOfCare": [{"reference": episode_ref}],
        "period": {"start": on, "end": on},
    }


def delivery(episode_ref: str = EPISODE, mother_ref: str = MOTHER) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "meta": {"profile": [SD(canonical.PROFILE_DELIVERY)]},
        "extension": [
            {"url": canonical.EXT_WORKFLOW_EPISODE, "valueReference": {"reference": episode_ref}},
            {"url": SD(canonical.EXT_LIVE_BIRTHS), "valueUnsignedInt": 1},
            {"url": SD(canonical.EXT_STILLBIRTHS), "valueUnsignedInt": 0},
        ],
        "status": "completed",
        "code": {"coding": [{"system": EVENT, "code": "delivery"}]},
        "subject": {"reference": mother_ref},
        "performedDateTime": "2025-02-18",
    }


def birth(episode_ref: str = EPISODE, child_ref: str = CHILD) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "meta": {"profile": [SD(canonical.PROFILE_BIRTH)]},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"coding": [{"system": EVENT, "code": "birth"}]}],
        "subject": {"reference": child_ref},
        "episodeOfCare": [{"reference": episode_ref}],
        "period": {"start": "2025-02-18T06:40:00+07:00"},
    }


def birth_weight(grams: float, child_ref: str = CHILD, birth_ref: str = BIRTH) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"profile": [SD(canonical.PROFILE_BIRTH_OBSERVATION)]},
        "status": "final",
        "category": [{"coding": [{"system": canonical.OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": canonical.LOINC_SYSTEM, "code": "8339-4"}]},
        "subject": {"reference": child_ref},
        "encounter": {"reference": birth_ref},
        "effectiveDateTime": "2025-02-18T06:40:00+07:00",
        "valueQuantity": {"value": grams, "unit": "g", "system": UCUM, "code": "g"},
    }


def pregnancy_bundle(grams: float = 2380, visits: tuple[tuple[str, int], ...] = (("2024-08-26", 14),)
                     ) -> dict[str, Any]:
    """A transaction: mother (17 at delivery), pregnancy, visits, delivery, newborn and its birth weight."""
    entries = [
        _entry(MOTHER, mother()),
        _entry(CHILD, child()),
        _entry(EPISODE, episode()),
        *[_entry(f"urn:uuid:8b0f5d1e-0000-4000-8000-1000000000{i:02d}", antenatal(on, w))
          for i, (on, w) in enumerate(visits)],
        _entry("urn:uuid:8b0f5d1e-0000-4000-8000-000000000006", delivery()),
        _entry(BIRTH, birth()),
        _entry(WEIGHT, birth_weight(grams)),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def ids_by_url(response: dict[str, Any], bundle: dict[str, Any]) -> dict[str, str]:
    """fullUrl -> "Type/id" from a transaction response."""
    out = {}
    for sent, got in zip(bundle["entry"], response["entry"], strict=True):
        location = got["response"]["location"]
        out[sent["fullUrl"]] = "/".join(location.split("/_history")[0].split("/")[-2:])
    return out
