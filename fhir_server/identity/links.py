"""Cross-agency reads follow the links: one child's records, whichever agency holds them.

``child_patient_ids`` is what ``$everything``, ``$summary`` and exports call to cover a child across
agencies; the ``:mdm`` search modifier (named as in HAPI FHIR's MDM) does the same for a reference
search: ``Observation?subject:mdm=Patient/123`` finds the Observations of every record linked to 123.
Neither decides visibility: the ids go into a search whose access restriction is compiled into the
query, so each agency's data comes back only where the caller may see it (its own, the golden identity
of a child it serves, and what consent allows).
"""

from __future__ import annotations

from typing import Any

from fhir_server.identity.book import current
from fhir_server.interactions.errors import FhirError

MODIFIER = "mdm"


async def child_patient_ids(store: Any, patient_id: str) -> list[str]:
    """The Patient ids of the child ``patient_id`` belongs to: ``patient_id`` first, then the golden
    record and every linked source record. Search them through the caller's ``ctx.store`` (access is
    enforced inside the query), so the caller sees only what it may of each."""
    book = await current(store)
    return [patient_id, *sorted(book.linked(patient_id) - {patient_id})]


def _references_patient(resource_type: str | None, code: str) -> bool:
    from fhir_server.search import registry

    if resource_type is None:
        return False
    if code == "_id":
        return resource_type == "Patient"
    param = registry.get(resource_type, code)
    return (
        param is not None and param.type == "reference" and (not param.targets or "Patient" in param.targets)
    )


def _patient_id(value: str) -> str | None:
    text = value.strip()
    if "/" in text:
        kind, _, rest = text.rpartition("/")
        if not kind.endswith("Patient"):
            return None
        text = rest
    return text or None


async def expand_mdm(
    store: Any, resource_type: str | None, params: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, str]]]:
    """Rewrite ``name:mdm=Patient/X`` as ``name=<every Patient linked to X>`` (400 where it cannot apply).

    Also returns each rewritten parameter mapped back to the one the client sent: the links of the
    answer show that, never the linked ids (which would tell a caller the records of a child it may
    not see, and tell a hidden child from a missing one).
    """
    shown: dict[tuple[str, str], tuple[str, str]] = {}
    if not any(name.endswith(f":{MODIFIER}") for name, _ in params):
        return params, shown
    out: list[tuple[str, str]] = []
    for name, value in params:
        code, _, modifier = name.partition(":")
        if modifier != MODIFIER:
            out.append((name, value))
            continue
        if not _references_patient(resource_type, code):
            raise FhirError(
                400,
                f"Invalid search parameter '{name}': :{MODIFIER} follows identity links, so it applies to"
                " _id on Patient and to reference parameters that point at a Patient",
                code="invalid",
                expression=[name],
            )
        ids: list[str] = []
        for item in value.split(","):
            pid = _patient_id(item)
            if pid is None:
                raise FhirError(
                    400, f"'{name}': '{item}' is not a Patient reference", code="invalid", expression=[name]
                )
            ids.extend(await child_patient_ids(store, pid))
        unique = list(dict.fromkeys(ids))
        expanded = (code, ",".join(unique if code == "_id" else [f"Patient/{i}" for i in unique]))
        out.append(expanded)
        shown[expanded] = (name, value)
    return out, shown
