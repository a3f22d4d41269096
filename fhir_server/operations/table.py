"""Every ``$operation`` the server offers. The CapabilityStatement is generated from this list.

Adding an operation:
1. a thin module here in ``operations/`` whose async handler calls into its capability's folder;
2. an ``Operation(...)`` entry below, with ``definition`` = the canonical URL of its OperationDefinition;
3. if that OperationDefinition is not one of HL7's R4 core ones (``http://hl7.org/fhir/OperationDefinition/
   ...``, generated from the official package into ``definitions/data/operation_definitions.json.gz``
   by ``scripts/generate_definitions.py``), add it as ``operations/definitions/OperationDefinition-<id>.json``
   (ours under ``canonical.BASE``, or an implementation guide's such as Bulk Data ``$export``).

``operations/published.py`` resolves every ``definition`` named here and the start-up loader stores them,
so each is readable at ``OperationDefinition/[id]`` and searchable (``?url=``, ``?code=``);
``tests/operations/test_operation_definitions.py`` fails when one cannot be resolved.
"""

from __future__ import annotations

from fhir_server import canonical, definitions
from fhir_server.operations import (
    evaluate_measure,
    everything,
    export,
    identity,
    reindex,
    subscriptions,
    summary,
    terminology,
    viewdefinition_run,
)
from fhir_server.operations.registry import Operation
from fhir_server.operations.validate import validate_operation

_OD = "http://hl7.org/fhir/OperationDefinition/"
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
_SOF_RUN = "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run"

OPERATIONS: list[Operation] = [
    Operation(
        "expand",
        terminology.expand,
        ("ValueSet",),
        type_level=True,
        instance_level=True,
        definition=_OD + "ValueSet-expand",
    ),
    Operation(
        "lookup",
        terminology.lookup,
        ("CodeSystem",),
        type_level=True,
        instance_level=True,
        definition=_OD + "CodeSystem-lookup",
    ),
    Operation(
        "subsumes",
        terminology.subsumes,
        ("CodeSystem",),
        type_level=True,
        instance_level=True,
        definition=_OD + "CodeSystem-subsumes",
    ),
    Operation(
        "translate",
        terminology.translate,
        ("ConceptMap",),
        type_level=True,
        instance_level=True,
        definition=_OD + "ConceptMap-translate",
    ),
    Operation(
        "validate-code",
        terminology.validate_code,
        ("CodeSystem",),
        type_level=True,
        instance_level=True,
        definition=_OD + "CodeSystem-validate-code",
    ),
    Operation(
        "validate-code",
        terminology.validate_code,
        ("ValueSet",),
        type_level=True,
        instance_level=True,
        definition=_OD + "ValueSet-validate-code",
    ),
    Operation(
        "everything",
        everything.everything,
        ("Patient",),
        instance_level=True,
        definition=_OD + "Patient-everything",
    ),
    Operation(
        "summary",
        summary.summary,
        ("Patient",),
        instance_level=True,
        definition=f"{canonical.BASE}/OperationDefinition/Patient-summary",
        takes_format=True,  # _format=html: the printable page
    ),
    Operation(
        "match",
        identity.match,
        ("Patient",),
        type_level=True,
        get_allowed=False,
        definition=_OD + "Patient-match",
    ),
    *[
        Operation(
            name,
            handler,
            ("Patient",),
            type_level=True,
            affects_state=name != "identity-links",
            definition=f"{canonical.BASE}/OperationDefinition/{name}",
        )
        for name, handler in (
            ("identity-links", identity.links),
            ("identity-link", identity.link),
            ("identity-unlink", identity.unlink),
            ("identity-merge", identity.merge),
            ("identity-unmerge", identity.unmerge),
            ("identity-not-match", identity.not_match),
            ("identity-link-existing", identity.link_existing),
        )
    ],
    Operation(
        "reindex",
        reindex.run,
        system=True,
        type_level=True,
        resource_types=tuple(sorted(definitions.resource_types())),
        affects_state=True,
        definition=f"{canonical.BASE}/OperationDefinition/reindex",
    ),
    Operation(
        "validate",
        validate_operation,
        tuple(sorted(definitions.resource_types())),
        type_level=True,
        instance_level=True,
        definition=_OD + "Resource-validate",
    ),
    Operation(
        "viewdefinition-run",
        viewdefinition_run.run,
        ("ViewDefinition",),
        system=True,
        type_level=True,
        instance_level=True,
        definition=_SOF_RUN,
        takes_format=True,
    ),
    Operation(
        "run",
        viewdefinition_run.run,
        ("ViewDefinition",),
        type_level=True,
        instance_level=True,
        definition=_SOF_RUN,
        takes_format=True,
    ),
    Operation("export", export.export, system=True, definition=_BULK + "export"),
    Operation("export", export.export, ("Patient",), type_level=True, definition=_BULK + "patient-export"),
    Operation("export", export.export, ("Group",), instance_level=True, definition=_BULK + "group-export"),
    Operation(
        "evaluate-measure",
        evaluate_measure.evaluate_measure,
        ("Measure",),
        type_level=True,
        instance_level=True,
        definition=_OD + "Measure-evaluate-measure",
    ),
    Operation(
        "status",
        subscriptions.subscription_status,
        ("Subscription",),
        type_level=True,
        instance_level=True,
        definition=_BACKPORT + "backport-subscription-status",
    ),
    Operation(
        "events",
        subscriptions.subscription_events,
        ("Subscription",),
        instance_level=True,
        definition=_BACKPORT + "backport-subscription-events",
    ),
    Operation(
        "get-ws-binding-token",
        subscriptions.ws_binding_token,
        ("Subscription",),
        instance_level=True,
        affects_state=True,
        definition=_BACKPORT + "backport-subscription-get-ws-binding-token",
    ),
]
