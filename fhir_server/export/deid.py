"""De-identification of one resource for research exports (the method is described for an ethics
committee in ``docs/deidentification.md``; keep the two in step).

Rules, applied to every element at every depth:
- ids and every reference (``Type/id``, absolute URLs) become keyed-hash pseudonyms; a reference's
  ``display`` and ``identifier`` go;
- names, identifiers, telecom, photos, contacts, free text (narrative, ``text`` of CodeableConcepts and
  Dosages, notes, comments, descriptions, instructions, ``valueString``/``valueMarkdown``) and
  attachment contents go; a string that is a valid Thai citizen id goes wherever it is;
- every full date, dateTime and instant moves by the child's offset (whole days, the same for all of
  one child's data, so intervals and ages stay exact); the birth date becomes year-month (or year,
  when k-anonymity asks for it);
- a Patient's address keeps only its DOPA province and district codes (province only, when
  k-anonymity asks for it); other addresses go;
- ``meta`` keeps profiles only, and gains the security labels saying what was done.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from fhir_server import canonical
from fhir_server.export.pseudonyms import Pseudonymiser

DOPA_EXTENSION = canonical.structure_definition(canonical.EXT_DOPA_ADDRESS_CODE)
_V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SECURITY_LABELS = (
    {"system": _V3_OBSERVATION_VALUE, "code": "PSEUDED", "display": "pseudonymized"},
    {"system": _V3_OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"},
    {"system": canonical.V3_ACT_REASON_SYSTEM, "code": "HRESCH", "display": "healthcare research"},
)
# Elements removed wherever they appear.
_DROP = frozenset(
    {
        "name",
        "identifier",
        "telecom",
        "photo",
        "contact",
        "text",
        "div",
        "note",
        "comment",
        "description",
        "patientInstruction",
        "valueString",
        "valueMarkdown",
        "alias",
        "multipleBirthBoolean",
        "multipleBirthInteger",
        "address",
        "implicitRules",
    }
)
_SKIP = _DROP | {"meta", "id"}  # meta and id are set at the top; elements' own ids are not needed
# Elements whose values are plain codes and numbers (Coding, Quantity): nothing in them is removed.
_PLAIN_KEYS = frozenset(
    {"system", "code", "display", "version", "userSelected", "value", "unit", "comparator"}
)
_ATTACHMENT_CONTENT = ("data", "url", "title", "hash")
_CONCEPT_KEYS = frozenset({"coding", "text"})  # a CodeableConcept's usual members
# Members only a HumanName or an Address has: such an element goes whole, whatever it is called.
_PERSONAL_SHAPES = frozenset(
    {"family", "given", "prefix", "suffix", "line", "city", "postalCode", "district"}
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(.*)$")
_LINK_FIELDS = ("subject", "patient", "beneficiary", "for", "individual")

# k-anonymity generalisation levels (fhir_server.export.kanon): what a Patient keeps.
LEVEL_MONTH_DISTRICT, LEVEL_YEAR_DISTRICT, LEVEL_YEAR_PROVINCE, LEVEL_YEAR_PROVINCE_NO_SEX = 0, 1, 2, 3
SUPPRESSED = 4


def is_cid(text: str) -> bool:
    """A valid 13-digit Thai citizen id (mod-11 check digit)."""
    if len(text) != 13 or not text.isdigit():
        return False
    total = sum(int(text[i]) * (13 - i) for i in range(12))
    return (11 - total % 11) % 10 == int(text[12])


def shift_date(value: str, days: int) -> str:
    """``value`` moved by ``days`` when it holds a full date; partial dates (year, year-month) as they are."""
    m = _DATE.match(value)
    if m is None:
        return value
    try:
        moved = date(int(m[1]), int(m[2]), int(m[3])) + timedelta(days=days)
    except (ValueError, OverflowError):
        return value
    return moved.isoformat() + m[4]


def child_of(resource: dict[str, Any]) -> str | None:
    """The child a resource is about, from its usual link fields (None when it names none)."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for name in _LINK_FIELDS:
        value = resource.get(name)
        for ref in value if isinstance(value, list) else (value,):
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str):
                kind, _, id_ = target.split("/_history/")[0].rstrip("/").rpartition("/")
                if kind.endswith("Patient") and id_:
                    return id_
    return None


class Deidentifier:
    """Applies the rules above under one project's pseudonyms."""

    def __init__(self, pseudonyms: Pseudonymiser) -> None:
        self.pseudonyms = pseudonyms
        # References repeat (a child's subject, a clinic's performer): each text is worked out once.
        self._references: dict[str, str | None] = {}
        self._shifted: dict[tuple[str, int], str | None] = {}

    def reference(self, text: str) -> str | None:
        """A pseudonymous reference, or None for one that cannot be kept (urn:, identifiers)."""
        try:
            return self._references[text]
        except KeyError:
            pass
        found = self._reference(text)
        if len(self._references) >= 20_000:
            self._references.clear()  # bounded: memory stays flat over any export
        self._references[text] = found
        return found

    def _reference(self, text: str) -> str | None:
        if text.startswith("#"):
            return text  # a contained resource: local
        body, _, _version = text.partition("/_history/")
        parts = body.rstrip("/").split("/")
        if len(parts) < 2 or not parts[-2][:1].isupper():
            return None
        kind, id_ = parts[-2], parts[-1]
        if kind == "Patient":
            return f"Patient/{self.pseudonyms.child(id_)}"
        return f"{kind}/{self.pseudonyms.reference(kind, id_)}"

    def shift(self, value: str, days: int) -> str:
        """``shift_date``, with the moved calendar day remembered (dates repeat: one clinic day, many
        visits)."""
        key = (value[:10], days)
        moved = self._shifted.get(key, "")
        if moved == "":
            day = key[0]
            result = shift_date(day, days)
            moved = None if result is day else result  # None: not a date
            if len(self._shifted) < 20_000:
                self._shifted[key] = moved
        if moved is None or "\n" in value:
            return value if moved is None else shift_date(value, days)
        return moved + value[10:]

    def resource(self, resource: dict[str, Any], child: str | None, level: int = 0) -> dict[str, Any]:
        """The de-identified copy of ``resource``; ``child`` decides the date offset, ``level`` what a
        Patient keeps (k-anonymity)."""
        days = self.pseudonyms.offset_days(child) if child is not None else 0
        rtype = str(resource.get("resourceType"))
        out: dict[str, Any] = {"resourceType": rtype}
        rid = resource.get("id")
        if isinstance(rid, str):
            out["id"] = (
                self.pseudonyms.child(rid)
                if rtype == "Patient"
                else self.pseudonyms.reference(rtype, rid, repeats=False)
            )
        out["meta"] = _meta(resource.get("meta"))
        if rtype == "Patient":
            self._patient(resource, out, days, level)
            return out
        cleaned = self._object(resource, days)
        cleaned.pop("resourceType", None)  # a new dict: the root always has keys to remove or rewrite
        out.update(cleaned)
        return out

    def _patient(self, source: dict[str, Any], out: dict[str, Any], days: int, level: int) -> None:
        """A Patient keeps only what the method allows: see the module docstring."""
        if isinstance(source.get("active"), bool):
            out["active"] = source["active"]
        gender = source.get("gender")
        if isinstance(gender, str):
            out["gender"] = "unknown" if level >= LEVEL_YEAR_PROVINCE_NO_SEX else gender
        birth = source.get("birthDate")
        if isinstance(birth, str) and len(birth) >= 4:
            shifted = shift_date(birth, days)
            out["birthDate"] = shifted[:4] if level >= LEVEL_YEAR_DISTRICT else shifted[:7]
        if isinstance(source.get("deceasedBoolean"), bool):
            out["deceasedBoolean"] = source["deceasedBoolean"]
        elif isinstance(source.get("deceasedDateTime"), str):
            out["deceasedDateTime"] = shift_date(source["deceasedDateTime"], days)
        province, district = address_codes(source)
        codes = []
        if province is not None:
            codes.append({"url": "province", "valueCoding": province})
        if district is not None and level < LEVEL_YEAR_PROVINCE:
            codes.append({"url": "district", "valueCoding": district})
        if codes:
            out["address"] = [{"extension": [{"url": DOPA_EXTENSION, "extension": codes}]}]
        managing = source.get("managingOrganization")
        if isinstance(managing, dict) and isinstance(managing.get("reference"), str):
            ref = self.reference(managing["reference"])
            if ref is not None:
                out["managingOrganization"] = {"reference": ref}

    def _object(self, node: dict[str, Any], days: int) -> dict[str, Any]:
        # Hot path (every element of every exported resource): type() checks and inlined leaf rules;
        # the commonest shapes (plain References, Codings) are also decided inline by the callers.
        if type(node.get("value")) is str or not node.keys().isdisjoint(_PERSONAL_SHAPES):
            # an Identifier or ContactPoint, a HumanName or an Address, whatever element holds it
            # (requisition, valueIdentifier, valueHumanName, locationAddress, ...)
            return {}
        if node.keys() <= _PLAIN_KEYS:
            # Codings and Quantities, the commonest elements: kept whole unless a value needs a rule
            for value in node.values():
                if type(value) is str and len(value) >= 10 and value[0].isdigit():
                    break
            else:
                return node
        out: dict[str, Any] = {}
        coding = "code" in node or "system" in node
        attachment = "contentType" in node or "data" in node
        for key, value in node.items():
            if key in _SKIP:
                continue
            kind = type(value)
            if kind is str:
                if key == "reference":
                    ref = self.reference(value)
                    if ref is not None:
                        out[key] = ref
                    continue
                if (key == "display" and not coding) or (attachment and key in _ATTACHMENT_CONTENT):
                    continue
                size = len(value)
                if size == 13 and value.isdigit() and is_cid(value):
                    continue
                if days and size >= 10 and value[4] == "-" and value[0].isdigit():
                    value = self.shift(value, days)
                out[key] = value
            elif kind is dict:
                if len(value) == 1 and type(target := value.get("reference")) is str:
                    # a plain Reference, the commonest element after codes: the rule inlined
                    ref = self.reference(target)
                    if ref is not None:
                        out[key] = {"reference": ref}
                    continue
                if value.keys() <= _CONCEPT_KEYS and type(codings := value.get("coding")) is list:
                    # a CodeableConcept: its codings, never its text
                    items = self._list(codings, days, "coding")
                    if items:
                        out[key] = {"coding": items}
                    continue
                cleaned = self._object(value, days)
                if key == "resource" and "resourceType" in value:
                    cleaned = {"resourceType": value["resourceType"], **cleaned}
                if cleaned:
                    out[key] = cleaned
            elif kind is list:
                items = self._list(value, days, key)
                if items:
                    out[key] = items
            else:
                out[key] = value
        return out

    def _list(self, values: list[Any], days: int, key: str) -> list[Any]:
        items: list[Any] = []
        for item in values:
            kind = type(item)
            if kind is dict:
                if item.keys() <= _PLAIN_KEYS and type(item.get("value")) is not str:
                    # a Coding or Quantity (the generic check, inlined for the commonest element)
                    for value in item.values():
                        if type(value) is str and len(value) >= 10 and value[0].isdigit():
                            break
                    else:
                        items.append(item)
                        continue
                elif item.keys() <= _CONCEPT_KEYS and type(codings := item.get("coding")) is list:
                    concept = self._list(codings, days, "coding")
                    if concept:
                        items.append({"coding": concept})
                    continue
                cleaned = self._object(item, days)
                if key == "contained" and "resourceType" in item:
                    # contained resources keep their type and local id (references to them are "#id")
                    local = {"resourceType": item["resourceType"]}
                    if isinstance(item.get("id"), str):
                        local["id"] = item["id"]
                    cleaned = {**local, **cleaned}
                if cleaned:
                    items.append(cleaned)
            elif kind is str:
                size = len(item)
                if size == 13 and item.isdigit() and is_cid(item):
                    continue
                if days and size >= 10 and item[4] == "-" and item[0].isdigit():
                    item = self.shift(item, days)
                items.append(item)
            elif item is not None:
                items.append(self._list(item, days, key) if kind is list else item)
        if key == "extension" or key == "modifierExtension":
            # an extension whose value was removed is no extension any more
            items = [v for v in items if any(k.startswith(("value", "extension")) for k in v)]
        return items


_LABELS = [dict(label) for label in SECURITY_LABELS]


def _meta(meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(meta, dict):
        if isinstance(meta.get("profile"), list):
            out["profile"] = meta["profile"]
        tags = [t for t in meta.get("tag", []) if isinstance(t, dict) and t.get("code") == "SUBSETTED"]
        if tags:
            out["tag"] = tags
    out["security"] = _LABELS  # shared and never changed: it is only serialised
    return out


def address_codes(patient: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(province, district) DOPA Codings of the Patient's first address that has them."""
    for address in patient.get("address", []) if isinstance(patient.get("address"), list) else []:
        if not isinstance(address, dict):
            continue
        for ext in address.get("extension", []) if isinstance(address.get("extension"), list) else []:
            if not isinstance(ext, dict) or ext.get("url") != DOPA_EXTENSION:
                continue
            found: dict[str, dict[str, Any]] = {}
            for part in ext.get("extension", []) if isinstance(ext.get("extension"), list) else []:
                coding = part.get("valueCoding") if isinstance(part, dict) else None
                if isinstance(coding, dict) and part.get("url") in ("province", "district"):
                    found[part["url"]] = {k: coding[k] for k in ("system", "code") if k in coding}
            if found:
                return found.get("province"), found.get("district")
    return None, None


def quasi_identifiers(patient: dict[str, Any], days: int) -> tuple[str, str, str, str]:
    """(birth year-month after the shift, sex, district code, province code) of a Patient."""
    return shifted_quasi_identifiers(*patient_elements(patient), days)


def patient_elements(patient: dict[str, Any]) -> tuple[str | None, str | None, str | None, str | None]:
    """(birth date, gender, district code, province code) of a Patient: all its quasi-identifiers come
    from, and all an export keeps of a Patient while it plans."""
    birth = patient.get("birthDate")
    gender = patient.get("gender")
    province, district = address_codes(patient)
    return (
        birth if isinstance(birth, str) else None,
        gender if isinstance(gender, str) else None,
        str(district.get("code")) if district else None,
        str(province.get("code")) if province else None,
    )


def shifted_quasi_identifiers(
    birth: str | None, gender: str | None, district: str | None, province: str | None, days: int
) -> tuple[str, str, str, str]:
    """``quasi_identifiers`` from ``patient_elements``."""
    month = shift_date(birth, days)[:7] if birth is not None and len(birth) >= 7 else "unknown"
    unknown = "unknown"
    return (
        month,
        gender if gender is not None else unknown,
        district if district is not None else unknown,
        province if province is not None else unknown,
    )
