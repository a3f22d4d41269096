"""Requests for help (อพม. Smart): a completed response opens a case and a routed triage task.

The Questionnaire (``data/Questionnaire-th-help-request.json``) is shipped as a resource. A
QuestionnaireResponse to it is validated against it by the validator like any response (required
items, types, answer value sets, enableWhen). Once it is ``completed``, in the same transaction:

- an EpisodeOfCare (type ``th-workflow#help-case``) opens the child's case, managed by the office;
- a triage Task (``th-workflow#triage``) asks that office to act: requested by the agency that
  submitted the response, owned by the office the routing table (``data/help-routing.json``) gives for
  the family's subdistrict, with the priority the urgency maps to and a due date from the service-level
  table (category ``triage``);
- when the family agreed to share and a guardian gave the answers (``source`` is a RelatedPerson), a
  TH Data-Sharing Consent for that office, recorded by the submitting agency under the usual rules
  (it is left out, and the audit says why, when those rules do not allow it).

All of them belong to the submitting agency (its writing tag) and carry the identifier
``help-request|<response id>``: a response opens its case once, however often it is saved again.
The msdhs-case mapper opens the same kind of EpisodeOfCare for an imported case.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import geothai
import orjson

from fhir_server import canonical
from fhir_server.interactions.errors import FhirError
from fhir_server.storage.base import StoredResource, StoreTransaction
from fhir_server.workflow import agencies, deadlines, referrals

QUESTIONNAIRE_URL = f"{canonical.BASE}/Questionnaire/{canonical.QUESTIONNAIRE_HELP_REQUEST}"
WORKFLOW = canonical.code_system(canonical.CS_WORKFLOW)
PROBLEM = canonical.code_system(canonical.CS_HELP_PROBLEM)
AREA = canonical.code_system(canonical.CS_ADMIN_AREA)
_CONSENT_CLASSES = ("demographics", "family", "social-welfare", "referral", "wellbeing")


def _data(name: str) -> bytes:
    return resources.files("fhir_server.workflow").joinpath(f"data/{name}").read_bytes()


@cache
def questionnaire() -> dict[str, Any]:
    resource: dict[str, Any] = orjson.loads(_data("Questionnaire-th-help-request.json"))
    return resource


@cache
def routing() -> dict[str, Any]:
    table: dict[str, Any] = orjson.loads(_data("help-routing.json"))
    return table


def shipped_resources() -> list[dict[str, Any]]:
    """Loaded into the store at start-up, so ``Questionnaire/th-help-request`` is readable."""
    return [questionnaire()]


def is_help_request(response: dict[str, Any]) -> bool:
    ref = response.get("questionnaire")
    return isinstance(ref, str) and ref.split("|", 1)[0] == QUESTIONNAIRE_URL


def route(subdistrict: str) -> dict[str, Any]:
    """The office (an identifier-only reference) responsible for a DOPA subdistrict code."""
    table = routing()
    best = max(
        (r for r in table["routes"] if subdistrict.startswith(r["area"])), key=lambda r: len(r["area"])
    )
    province, district = subdistrict[:2], subdistrict[:4]
    district_area = geothai.district(district)
    province_area = geothai.province(province)
    names = {
        "province": province,
        "district": district,
        "subdistrict": subdistrict,
        "district_name": district_area.name_th if district_area else district,
        "province_name": province_area.name_th if province_area else province,
    }
    office = best["office"]
    return {
        "identifier": {"system": office["system"], "value": office["value"].format(**names)},
        "display": office["display"].format(**names),
    }


def _where(link_id: str) -> str:
    return f"QuestionnaireResponse.item.where(linkId='{link_id}')"


def _answers(items: Any, found: dict[str, list[Any]]) -> dict[str, list[Any]]:
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        link = item.get("linkId")
        for answer in item.get("answer") or []:
            if isinstance(answer, dict):
                value = next((v for k, v in answer.items() if k.startswith("value")), None)
                if value is not None and isinstance(link, str):
                    found.setdefault(link, []).append(value)
                _answers(answer.get("item"), found)
        _answers(item.get("item"), found)
    return found


def _code(values: list[Any], link_id: str, what: str) -> str:
    for value in values:
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            return str(value["code"])
    raise FhirError(
        422, f"A request for help needs {what} ({link_id})", code="required", expression=[_where(link_id)]
    )


def _subject(response: dict[str, Any]) -> str:
    subject = response.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        raise FhirError(
            422,
            "A request for help is about a child: QuestionnaireResponse.subject must refer to a Patient",
            code="required",
            expression=["QuestionnaireResponse.subject"],
        )
    return reference


async def after_response_write(
    store: Any, tx: StoreTransaction, stored: StoredResource, current: StoredResource | None
) -> None:
    response = orjson.loads(stored.body)
    if not is_help_request(response) or response.get("status") != "completed":
        return
    if (
        current is not None
        and not current.deleted
        and orjson.loads(current.body).get("status") == "completed"
    ):
        return  # the case was opened when it was first completed
    await _open_case(store, tx, stored.id, response)


async def _already_opened(tx: StoreTransaction, response_id: str) -> bool:
    from fhir_server.search.query import parse_search

    server = tx.as_server() if hasattr(tx, "as_server") else tx
    query = parse_search(
        "EpisodeOfCare",
        [("identifier", f"{canonical.HELP_REQUEST_SYSTEM}|{response_id}")],
        base_url="",
        strict=True,
        default_count=1,
        max_count=1,
    )
    return bool((await server.search(query)).matches)


async def _open_case(store: Any, tx: StoreTransaction, response_id: str, response: dict[str, Any]) -> None:
    from fhir_server.interactions import writes

    answers = _answers(response.get("item"), {})
    child = _subject(response)
    subdistrict = _code(
        answers.get("location.subdistrict", []), "location.subdistrict", "the family's subdistrict"
    )
    urgency = _code(answers.get("urgency", []), "urgency", "an urgency")
    problems = [v["code"] for v in answers.get("problem", []) if isinstance(v, dict) and v.get("code")]
    if await _already_opened(tx, response_id):
        return
    index = await agencies.identifier_index(store)
    resolved = {"owner": route(subdistrict)}
    agencies.resolve("Task", resolved, index)  # adds the reference when the office is registered
    office = resolved["owner"]
    principal = getattr(tx, "principal", None)
    submitter = {"reference": principal.organization} if principal is not None else None
    now = datetime.now(UTC)
    authored = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    identifier = [{"system": canonical.HELP_REQUEST_SYSTEM, "value": response_id}]
    priority = routing()["priority"].get(urgency, "routine")
    case: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "identifier": identifier,
        "status": "active",
        "type": [{"coding": [{"system": WORKFLOW, "code": "help-case", "display": "กรณีขอความช่วยเหลือ"}]}],
        "patient": {"reference": child},
        "managingOrganization": office,
        "period": {"start": authored},
    }
    referrals.mark_changed_by(tx, case)
    case_id = writes.new_id()
    await writes.write_version(tx, "EpisodeOfCare", case_id, case, None, current=None, method="POST")
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": identifier,
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": {"coding": [{"system": WORKFLOW, "code": "triage", "display": "คัดกรองคำขอความช่วยเหลือ"}]},
        "description": "คำขอความช่วยเหลือ: " + ", ".join(problems),
        "focus": {"reference": f"QuestionnaireResponse/{response_id}"},
        "for": {"reference": child},
        "authoredOn": authored,
        "owner": office,
        "reasonCode": {"coding": [{"system": PROBLEM, "code": p} for p in problems]},
        "restriction": {
            "period": {"end": deadlines.due_date(authored, deadlines.allowed_time("triage", priority), now)}
        },
        "input": [
            {
                "type": {"text": "case"},
                "valueReference": {"reference": f"EpisodeOfCare/{case_id}"},
            }
        ],
    }
    if submitter is not None:
        task["requester"] = submitter
    referrals.mark_changed_by(tx, task)
    await writes.write_version(tx, "Task", writes.new_id(), task, None, current=None, method="POST")
    shares = any(v is True for v in answers.get("consent-to-share", []))
    if shares:
        await _record_consent(tx, response, child, office, now.date())
    note = getattr(tx, "note", None)
    if note is not None:
        where = office.get("reference") or office["identifier"]["value"]
        note(f"QuestionnaireResponse/{response_id}: request for help routed to {where} ({priority})")


async def _record_consent(
    tx: StoreTransaction, response: dict[str, Any], child: str, office: dict[str, Any], today: date
) -> None:
    """The family's agreement to share, as a consent for the office (when a guardian answered)."""
    from fhir_server.interactions import writes

    source = response.get("source")
    guardian = source.get("reference") if isinstance(source, dict) else None
    note = getattr(tx, "note", None)
    if not isinstance(guardian, str) or not guardian.startswith("RelatedPerson/"):
        if note is not None:
            note("no consent recorded: the answers do not come from a guardian (source is no RelatedPerson)")
        return
    actor = {k: v for k, v in office.items() if k in ("reference", "identifier", "display")}
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": canonical.CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [
            {"coding": [{"system": canonical.LOINC_SYSTEM, "code": canonical.CONSENT_CATEGORY_LOINC}]}
        ],
        "patient": {"reference": child},
        "dateTime": today.isoformat(),
        "performer": [{"reference": guardian}],
        "policy": [{"uri": f"{canonical.BASE}/policy/pdpa-data-sharing"}],
        "sourceReference": {"reference": f"QuestionnaireResponse/{response.get('id')}"},
        "provision": {
            "type": "permit",
            "period": {"start": today.isoformat(), "end": (today + timedelta(days=365)).isoformat()},
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
                    "reference": actor,
                }
            ],
            "purpose": [
                {"system": canonical.V3_ACT_REASON_SYSTEM, "code": "COC"},
                {"system": canonical.V3_ACT_REASON_SYSTEM, "code": "CAREMGT"},
            ],
            "code": [
                {"coding": [{"system": canonical.code_system(canonical.CS_DATA_CLASS), "code": c}]}
                for c in _CONSENT_CLASSES
            ],
        },
    }
    try:
        await writes.write_version(tx, "Consent", writes.new_id(), consent, None, current=None, method="POST")
    except FhirError as refused:
        if note is not None:
            note(f"no consent recorded for the office: {refused.diagnostics}")
