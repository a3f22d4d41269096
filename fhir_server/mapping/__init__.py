"""Legacy-format mappers: agency files (43-file exports, sheets, web-form JSON) to Thai-profiled FHIR.

Public face::

    available_formats() -> list[str]
    map_files(format_name, paths, validate=None) -> Iterator[MappedRecord | RowError]
    to_transaction_bundles(records, batch_size=500) -> Iterator[dict]

A new agency format is a new folder under ``fhir_server/mapping/formats/`` (README, schema.json,
mapping.json, samples, expected output), not new code here.
"""

from fhir_server.mapping.bundles import batch_records, to_transaction_bundles
from fhir_server.mapping.engine import Mapper, full_url, identifier_query, map_files
from fhir_server.mapping.model import MappedRecord, RowError
from fhir_server.mapping.spec import SpecError, available_formats, load_format

__all__ = [
    "MappedRecord",
    "Mapper",
    "RowError",
    "SpecError",
    "available_formats",
    "batch_records",
    "full_url",
    "identifier_query",
    "load_format",
    "map_files",
    "to_transaction_bundles",
]
