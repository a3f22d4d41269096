"""The terminology service: $lookup, $validate-code, $expand, $translate and $subsumes as plain functions.

It answers from our own CodeSystems, ValueSets and ConceptMaps (``terminology/`` at the repository
top level, plus the DOPA administrative areas built from geothai) and from the FHIR R4 core ones
shipped by ``fhir_server.definitions``. Everything returned is a FHIR resource as a dict.
"""

from fhir_server.terminology._service import (
    MAX_EXPANSION,
    code_system,
    expand,
    expand_codes,
    lookup,
    shipped_resource,
    shipped_resources,
    subsumes,
    translate,
    validate_code,
)

__all__ = [
    "MAX_EXPANSION",
    "code_system",
    "expand",
    "expand_codes",
    "lookup",
    "shipped_resource",
    "shipped_resources",
    "subsumes",
    "translate",
    "validate_code",
]
