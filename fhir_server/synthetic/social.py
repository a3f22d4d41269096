"""The social side of a child's record: referrals between agencies with their Tasks, wellbeing
assessments and the guardians' PDPA data-sharing consents."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.synthetic.agencies import Agency
from fhir_server.synthetic.config import PopulationConfig
from fhir_server.synthetic.identifiers import new_id
from fhir_server.synthetic.model import Child, coding, timestamp

_SNOMED = "http://snomed.info/sct"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"  # R4's canonical (not terminology.hl7.org)
_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

REFERRAL_CATEGORIES = {
    "health": "สุขภาพ",
    "development": "พัฒนาการ",
    "education": "การศึกษา",
    "welfare": "สวัสดิการสังคม",
    "protection": "การคุ้มครองเด็ก",
    "legal-status": "สถานะทางทะเบียน",
}
REFERRAL_REASONS = {
    "developmental-delay": "พัฒนาการล่าช้า",
    "malnutrition": "ภาวะทุพโภชนาการ",
    "neglect": "ถูกทอดทิ้ง/ละเลย",
    "violence": "ถูกกระทำรุนแรง",
    "out-of-school": "เด็กนอกระบบการศึกษา",
    "disability": "ความพิการ",
    "no-legal-status": "ไม่มีสถานะทางทะเบียน",
    "poverty": "ความยากจน",
}
# (Task status, ServiceRequest status, weight): every Task state a referral moves through.
TASK_STATES: list[tuple[str, str, float]] = [
    ("draft", "draft", 2),
    ("requested", "active", 12),
    ("received", "active", 10),
    ("accepted", "active", 12),
    ("rejected", "revoked", 6),
    ("ready", "active", 4),
    ("in-progress", "active", 18),
    ("on-hold", "on-hold", 4),
    ("completed", "completed", 24),
    ("cancelled", "revoked", 5),
    ("failed", "revoked", 3),
]
_STATES = [s[0] for s in TASK_STATES]
_SR_STATUS = {s[0]: s[1] for s in TASK_STATES}
_WEIGHTS = [s[2] for s in TASK_STATES]
_BUSINESS = {
    "received": "Received by the agency",
    "accepted": "Accepted, first contact planned",
    "in-progress": "Family contacted, service under way",
    "on-hold": "Waiting for the family",
    "completed": "Service delivered",
    "rejected": "Outside the agency's remit",
    "cancelled": "Withdrawn by the referring agency",
    "failed": "Family could not be reached",
}

# The four petals of the "flower" assessment. Provisional: the owner's tool is not confirmed yet, and
# the dimension code system (canonical.CS_WELLBEING_DIMENSION) holds more candidates.
WELLBEING_DIMENSIONS = {
    "health": "สุขภาพ",
    "education": "การศึกษา",
    "family": "ครอบครัวและการเลี้ยงดู",
    "income": "รายได้",
}
WELLBEING_LEVELS = ["good", "watch", "at-risk", "crisis"]  # best to worst
_LEVEL_DISPLAY = {"good": "ดี", "watch": "เฝ้าระวัง", "at-risk": "เสี่ยง", "crisis": "วิกฤต ต้องช่วยเหลือเร่งด่วน"}

DATA_CLASSES = ["demographics", "growth", "development", "immunization", "wellbeing", "referral"]


def referral(
    child: Child,
    on: date,
    category: str,
    reason: str,
    requester: Agency,
    performer: Agency,
    reason_reference: str | None = None,
    urgent: bool = False,
) -> list[dict[str, Any]]:
    """A TH Referral and its TH Referral Task, in a state drawn from every state a Task can be in."""
    rng = child.rng
    state = rng.choices(_STATES, _WEIGHTS)[0]
    due = on + timedelta(days=14 if urgent else 30)
    request_id, task_id = new_id(rng), new_id(rng)
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_REFERRAL)]},
        "status": _SR_STATUS[state],
        "intent": "order",
        "category": [
            {
                "coding": [
                    coding(
                        canonical.code_system(canonical.CS_REFERRAL_CATEGORY),
                        category,
                        REFERRAL_CATEGORIES[category],
                    )
                ]
            }
        ],
        "priority": "urgent" if urgent else "routine",
        "code": {"coding": [coding(_SNOMED, "3457005", "Patient referral")], "text": "Referral"},
        "subject": child.reference,
        "occurrencePeriod": {"start": on.isoformat(), "end": due.isoformat()},
        "authoredOn": timestamp(rng, on),
        "requester": requester.reference,
        "performer": [performer.reference],
        "reasonCode": [
            {
                "coding": [
                    coding(
                        canonical.code_system(canonical.CS_REFERRAL_REASON), reason, REFERRAL_REASONS[reason]
                    )
                ]
            }
        ],
    }
    if reason_reference:
        request["reasonReference"] = [{"reference": reason_reference}]
    last = min(on + timedelta(days=rng.randint(1, 45)), child.reference_date) if state != "draft" else on
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_REFERRAL_TASK)]},
        "basedOn": [{"reference": f"urn:uuid:{request_id}" if child.urn else f"ServiceRequest/{request_id}"}],
        "status": state,
    }
    if state in ("rejected", "cancelled", "failed", "on-hold"):
        task["statusReason"] = {"text": _BUSINESS[state]}
    if state in _BUSINESS:
        task["businessStatus"] = {"text": _BUSINESS[state]}
    task.update(
        {
            "intent": "order",
            "priority": request["priority"],
            "code": {"coding": [coding(_TASK_CODE, "fulfill", "Fulfill the focal request")]},
            "focus": task["basedOn"][0],
            "for": child.reference,
            "authoredOn": request["authoredOn"],
            "lastModified": max(timestamp(rng, last), request["authoredOn"]),  # Task inv-1
            "requester": requester.reference,
            "owner": performer.reference,
            "restriction": {"period": {"end": due.isoformat()}},
        }
    )
    if state in ("in-progress", "on-hold", "completed", "failed"):
        task["executionPeriod"] = {
            "start": task["lastModified"] if state != "completed" else request["authoredOn"]
        }
        if state == "completed":
            task["executionPeriod"]["end"] = task["lastModified"]
    return [request, task]


def wellbeing(child: Child, on: date, performer: Agency, strained: bool) -> dict[str, Any]:
    """A four-dimension wellbeing ("flower") assessment; strained families score lower."""
    rng = child.rng
    weights = [1, 3, 4, 2] if strained else [6, 3, 1, 0.2]
    levels = {dim: rng.choices(WELLBEING_LEVELS, weights)[0] for dim in WELLBEING_DIMENSIONS}
    worst = max(levels.values(), key=WELLBEING_LEVELS.index)
    level_system = canonical.code_system(canonical.CS_WELLBEING_LEVEL)
    dimension_system = canonical.code_system(canonical.CS_WELLBEING_DIMENSION)
    return {
        "resourceType": "Observation",
        "id": new_id(rng),
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_WELLBEING)]},
        "status": "final",
        "category": [{"coding": [coding(_OBS_CATEGORY, "social-history", "Social History")]}],
        "code": {
            "text": "การประเมินความเป็นอยู่ ดอกไม้ 4 มิติ (four-dimension wellbeing assessment)",
        },
        "subject": child.reference,
        "effectiveDateTime": on.isoformat(),
        "performer": [performer.reference],
        # The profile allows no Observation.value: the dimensions are the result; the overall level is
        # what the social worker writes down.
        "note": [{"text": f"ภาพรวม: {_LEVEL_DISPLAY[worst]}"}],
        "component": [
            {
                "code": {"coding": [coding(dimension_system, dim, display)]},
                "valueCodeableConcept": {"coding": [coding(level_system, level, _LEVEL_DISPLAY[level])]},
            }
            for (dim, display), level in zip(WELLBEING_DIMENSIONS.items(), levels.values(), strict=True)
        ],
    }


def _permit(actors: list[Agency], purpose: str, classes: list[str], kind: str = "permit") -> dict[str, Any]:
    return {
        "type": kind,
        "actor": [
            {
                "role": {"coding": [coding(_PARTICIPATION, "IRCP", "information recipient")]},
                "reference": agency.reference,
            }
            for agency in actors
        ],
        "purpose": [coding(_ACT_REASON, purpose)],
        # provision.code is where the profile (and the server's consent engine) reads the data class.
        "code": [{"coding": [coding(canonical.code_system(canonical.CS_DATA_CLASS), c)]} for c in classes],
    }


def consent(child: Child, config: PopulationConfig) -> dict[str, Any] | None:
    """A guardian's PDPA data-sharing consent. A child over 10 at signing also signs (PDPA s.20)."""
    rng = child.rng
    if not child.guardians or rng.random() >= config.consent_rate:
        return None
    start = max(child.birth_date, child.reference_date - timedelta(days=3 * 365))
    signed = start + timedelta(days=rng.randrange(max(1, (child.reference_date - start).days)))
    age_years = (signed - child.birth_date).days // 365.25
    guardian = child.guardians[0]
    performers = [guardian.reference] if age_years <= 10 else [guardian.reference, child.reference]
    local = child.agencies
    nested = [
        _permit(
            [child.health_centre, local.hospital],
            "TREAT",
            ["demographics", "growth", "development", "immunization", "referral"],
        ),
        _permit([local.social_welfare], "CAREMGT", ["demographics", "development", "wellbeing", "referral"]),
    ]
    educators = [a for a in (child.childcare, child.school) if a is not None]
    if educators:
        nested.append(_permit(educators, "COC", ["demographics", "growth", "development", "immunization"]))
        if rng.random() < 0.2:
            nested.append(_permit(educators, "COC", ["wellbeing"], kind="deny"))
    withdrawn = rng.random() < 0.08
    period = {"start": signed.isoformat(), "end": (signed + timedelta(days=3 * 365)).isoformat()}
    return {
        "resourceType": "Consent",
        "id": new_id(rng),
        "meta": {"profile": [canonical.structure_definition(canonical.PROFILE_CONSENT)]},
        "extension": [
            {
                "url": canonical.structure_definition(canonical.EXT_LAWFUL_BASIS),
                "valueCodeableConcept": {
                    "coding": [
                        coding(
                            canonical.code_system(canonical.CS_LAWFUL_BASIS),
                            "s26-explicit",
                            "ความยินยอมโดยชัดแจ้ง (มาตรา 26)",
                        )
                    ]
                },
            }
        ],
        "status": "inactive" if withdrawn else "active",
        "scope": {
            "coding": [
                coding(
                    "http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent"
                )
            ]
        },
        "category": [{"coding": [coding("http://loinc.org", "59284-0", "Patient Consent")]}],
        "patient": child.reference,
        "dateTime": timestamp(rng, signed),
        "performer": performers,
        "organization": [child.health_centre.reference],
        "policyRule": {"coding": [coding(_ACT_CODE, "OPTIN", "opt-in")]},
        # Opt-in: nothing is shared by default (a root "deny" without criteria), each nested provision
        # shares named classes with named agencies for the consent's three years. A root "permit" with
        # the period would share everything with everyone for those years (FHIR R4 Consent.provision).
        "provision": {"type": "deny", "provision": [{**p, "period": period} for p in nested]},
    }


def social_needs(child: Child, config: PopulationConfig) -> list[dict[str, Any]]:
    """Referrals for social problems and statelessness, with the wellbeing assessments that go with them."""
    rng, local = child.rng, child.agencies
    out: list[dict[str, Any]] = []
    window = max(1, min(730, child.age_days()))
    start = child.reference_date - timedelta(days=window)

    def some_day() -> date:
        return start + timedelta(days=rng.randrange(window))

    referred_for_welfare = False
    if child.stateless and rng.random() < 0.5:
        requester = child.school or child.childcare or child.health_centre
        out += referral(child, some_day(), "legal-status", "no-legal-status", requester, local.social_welfare)
        referred_for_welfare = True
    if rng.random() < config.social_referral_rate:
        reason = rng.choice(["poverty", "neglect", "violence", "out-of-school", "malnutrition", "disability"])
        on = some_day()
        reporter = child.provider_at(on)
        if reason == "out-of-school":
            out += referral(
                child, on, "education", reason, local.social_welfare, child.school or local.schools[0]
            )
        elif reason == "malnutrition":
            out += referral(child, on, "health", reason, reporter, child.health_centre)
        elif reason == "disability":
            out += referral(child, on, "health", reason, reporter, local.hospital)
        else:
            category = "welfare" if reason == "poverty" else "protection"
            out += referral(
                child, on, category, reason, reporter, local.social_welfare, urgent=reason == "violence"
            )
            referred_for_welfare = True
    if referred_for_welfare or rng.random() < config.wellbeing_rate:
        out.append(wellbeing(child, some_day(), local.social_welfare, strained=referred_for_welfare))
    return out
