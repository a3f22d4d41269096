"""A deterministic synthetic population of Bangkok children, their guardians and the agencies serving them.

``generate`` streams the resources (agencies first, then one household at a time); ``write_ndjson`` and
``write_transaction_bundles`` put them on disk. The same seed and size always give the same bytes.
"""

from fhir_server.synthetic.config import PopulationConfig
from fhir_server.synthetic.population import generate
from fhir_server.synthetic.writers import Summary, write_ndjson, write_transaction_bundles

__all__ = ["PopulationConfig", "Summary", "generate", "write_ndjson", "write_transaction_bundles"]
