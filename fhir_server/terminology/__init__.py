"""The terminology service: $lookup, $validate-code, $expand, $translate and $subsumes as plain functions.

It answers from our own CodeSystems, ValueSets and ConceptMaps (``data/``, shipped in the package;
``terminology_dir()`` says where they are read from), the DOPA administrative areas built from geothai,
and the FHIR R4 core ones shipped by ``fhir_server.definitions``. Everything returned is a FHIR resource
as a dict.
"""

from fhir_server.terminology._registry import terminology_dir
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
    "terminology_dir",
    "translate",
    "validate_code",
]
