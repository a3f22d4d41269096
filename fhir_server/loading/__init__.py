"""Loading files of FHIR data (transaction/batch bundles, NDJSON) into a server or a store."""

from fhir_server.loading.runner import LoadSummary, load_paths
from fhir_server.loading.sources import DEDUPLICATED_TYPES

__all__ = ["DEDUPLICATED_TYPES", "LoadSummary", "load_paths"]
