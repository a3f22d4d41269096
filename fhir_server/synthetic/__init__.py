"""A deterministic synthetic population of Bangkok children, their guardians and the agencies serving them.

``generate`` streams the resources (agencies first, then one household at a time); ``write_ndjson`` and
``write_transaction_bundles`` put them on disk, ``write_moph43`` writes the same population as the
43-file tables its health centres would export. The same seed and size always give the same bytes.
"""

from fhir_server.synthetic.config import PopulationConfig
from fhir_server.synthetic.population import generate
from fhir_server.synthetic.writers import Summary, write_moph43, write_ndjson, write_transaction_bundles

__all__ = [
    "PopulationConfig",
    "Summary",
    "generate",
    "write_moph43",
    "write_ndjson",
    "write_transaction_bundles",
]
