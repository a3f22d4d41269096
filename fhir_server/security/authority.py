"""Who may record a child's data-sharing decisions: the rules behind ``docs/consent-and-authority.md``.

A Consent changes who sees a child's data, so the server decides from its own records whether a
Consent counts, never from the Consent's content alone:

- it is recorded by an agency that **serves the child** (``serves_child``, the one definition), or by
  a client whose role holds authority over every child (admin);
- for a child aged 10 or under on the consent's date, a guardian (a ``RelatedPerson``) is its grantor;
- the check is made each time an active Consent is written, and the server marks the stored version
  with the authority it was recorded under (``CONSENT_AUTHORITY_SYSTEM``), so deciding on a request
  needs no look-up. Consents stored before this rule existed carry no mark: ``counts`` checks those
  against the same rules when the consent book reads them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson

from fhir_server import canonical, fhirjson
from fhir_server.security.roles import Role

CONSENT_AUTHORITY_SYSTEM = f"{canonical.BASE}/tag/consent-authority"
SERVING_AGENCY = "serving-agency"  # recorded by an agency that serves the child
ADMIN = "admin"  # recorded by a client whose role has authority over every child
GUARDIAN_AGE_LIMIT = 10  # at this age or under, a guardian must be the consent's grantor


def holds_authority_over_every_child(role: Role) -> bool:
    """Roles that may record consent for any child (admins; an identity steward role belongs here)."""
    return role.unrestricted


async def serves_child(reader: Any, organization: str, patient_id: str) -> bool:
    """Whether ``organization`` (``Organization/ID``) serves the child ``Patient/patient_id``.

    An agency serves a child when it keeps the child's record: the current version of the Patient
    resource was written by that agency, as the server's writing-agency tag records (clients cannot
    set or change that tag). Across agencies (``fhir_server.identity``: one child's source records
    share a server-managed golden record) it serves all of the child's records once a data steward
    linked or confirmed its record; an automatic link (a shared CID) carries no authority, so no
    agency gains any through a link its own write made (``fhir_server.identity.serving``). Data about
    the child written by an agency does not count on its own: an agency may write such data under a
    consent or in an emergency, and neither may become the authority to grant itself more. ``reader``
    is the store or a store transaction, unrestricted.
    """
    from fhir_server.identity.serving import serves

    return await serves(reader, organization, patient_id)


def consent_patient(consent: dict[str, Any]) -> str | None:
    """The id of the stored child a Consent is about (None for a contained or missing patient)."""
    patient = consent.get("patient")
    ref = patient.get("reference") if isinstance(patient, dict) else None
    if isinstance(ref, str) and "Patient/" in ref and not ref.startswith("#"):
        return ref.rsplit("Patient/", 1)[1].split("/_history")[0] or None
    return None


def _youngest_birth_date(value: Any) -> date | None:
    """The latest day a (possibly partial) FHIR birthDate can mean: partial dates count as young."""
    if not isinstance(value, str) or len(value) < 4 or not value[:4].isdigit():
        return None
    try:
        year = int(value[:4])
        if len(value) >= 10:
            return date(year, int(value[5:7]), int(value[8:10]))
        if len(value) >= 7:
            month = int(value[5:7])
            following = date(year + (month == 12), month % 12 + 1, 1)
            return date.fromordinal(following.toordinal() - 1)
        return date(year, 12, 31)
    except ValueError:
        return None


def _consent_day(consent: dict[str, Any]) -> date:
    value = consent.get("dateTime")
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    return datetime.now(UTC).date()


def _age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def needs_guardian(patient: dict[str, Any] | None, consent: dict[str, Any]) -> bool:
    """True when the child was 10 or under on the consent's date (an unknown birth date: False)."""
    born = _youngest_birth_date(patient.get("birthDate")) if patient else None
    return born is not None and _age_on(born, _consent_day(consent)) <= GUARDIAN_AGE_LIMIT


def has_guardian_grantor(consent: dict[str, Any]) -> bool:
    performers = consent.get("performer")
    for performer in performers if isinstance(performers, list) else []:
        ref = performer.get("reference") if isinstance(performer, dict) else None
        if isinstance(ref, str) and (ref.startswith("RelatedPerson/") or "/RelatedPerson/" in ref):
            return True
    return False


class ConsentRefused(Exception):
    """A Consent the writer may not record; ``status`` 403 (authority) or 422 (content)."""

    def __init__(self, status: int, message: str, expression: str) -> None:
        super().__init__(message)
        self.status, self.message, self.expression = status, message, expression


async def recording_authority(
    reader: Any, organization: str, role: Role, consent: dict[str, Any]
) -> str | None:
    """The authority under which ``organization`` records ``consent`` (a mark code), None when the
    Consent can never count (not active, or about no stored child); raises ``ConsentRefused``.

    The caller has already made sure the writer may see the child the Consent names.
    """
    patient_id = consent_patient(consent)
    if consent.get("status") != "active" or patient_id is None:
        return None
    if holds_authority_over_every_child(role):
        authority = ADMIN
    elif await serves_child(reader, organization, patient_id):
        authority = SERVING_AGENCY
    else:
        raise ConsentRefused(
            403,
            f"Only an agency that serves Patient/{patient_id} (keeps its record) may record consent"
            f" for it; {organization} does not. Ask the agency that keeps the child's record, or an"
            " administrator.",
            "Consent.patient",
        )
    stored = await reader.read("Patient", patient_id)
    patient = orjson.loads(stored.body) if stored is not None and not stored.deleted else None
    if needs_guardian(patient, consent) and not has_guardian_grantor(consent):
        raise ConsentRefused(
            422,
            f"Patient/{patient_id} was {GUARDIAN_AGE_LIMIT} or under on the consent's date: a guardian"
            " (a RelatedPerson) must be among Consent.performer, the consent's grantors",
            "Consent.performer",
        )
    return authority


def authority_mark(consent: dict[str, Any]) -> str | None:
    """The authority the server recorded on a stored Consent, if any."""
    meta = consent.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and tag.get("system") == CONSENT_AUTHORITY_SYSTEM:
            code = tag.get("code")
            return code if code in (SERVING_AGENCY, ADMIN) else None
    return None


def mark(body: bytes, consent: dict[str, Any], authority: str | None) -> bytes:
    """``body`` carrying exactly the server's authority mark (none when ``authority`` is None)."""
    meta = consent.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = meta.get("tag")
    kept = [
        t
        for t in (tags if isinstance(tags, list) else [])
        if not (isinstance(t, dict) and t.get("system") == CONSENT_AUTHORITY_SYSTEM)
    ]
    if authority is not None:
        kept.append({"system": CONSENT_AUTHORITY_SYSTEM, "code": authority})
    if kept:
        meta["tag"] = kept
    else:
        meta.pop("tag", None)
    return fhirjson.replace_member(body, "meta", meta)


async def counts(reader: Any, consent: dict[str, Any]) -> bool:
    """Whether a stored active Consent takes part in access decisions.

    A marked Consent was checked when it was recorded. An unmarked one (stored before these rules,
    or written with auth off) counts only when the agency that wrote it serves the child now and the
    guardian rule holds; consents recorded by admins before the rules need saving again.
    """
    if authority_mark(consent) is not None:
        return True
    from fhir_server.security.access import owner_of

    recorder, patient_id = owner_of(consent), consent_patient(consent)
    if recorder is None or patient_id is None:
        return False
    if not await serves_child(reader, recorder, patient_id):
        return False
    stored = await reader.read("Patient", patient_id)
    patient = orjson.loads(stored.body) if stored is not None and not stored.deleted else None
    return not needs_guardian(patient, consent) or has_guardian_grantor(consent)


# --- server-wide configuration --------------------------------------------------------------------

# Resources that change how the server treats everyone's data (search indexes, validation rules,
# terminology, notification topics): only clients with authority over the whole server write them.
CONFIGURATION_TYPES = frozenset(
    {
        "SearchParameter",
        "StructureDefinition",
        "CodeSystem",
        "ValueSet",
        "ConceptMap",
        "NamingSystem",
        "CompartmentDefinition",
        "OperationDefinition",
        "CapabilityStatement",
        "ImplementationGuide",
        "StructureMap",
        "GraphDefinition",
        "MessageDefinition",
        "SubscriptionTopic",
        "ViewDefinition",  # SQL on FHIR views: what an export or dashboard contains
    }
)


def may_configure(role: Role) -> bool:
    return role.unrestricted
