"""HL7's R4 SearchParameters, ValueSets and CodeSystems, served as read-only resources without being
written into any store.

The ~3,800 definitions ship with the package (``fhir_server.definitions``) and are the same for every
store, so copying them into each new store would cost seconds per store (tests make hundreds) and a
write of every one of them at each upgrade. Instead:

- ``read``/``vread`` of ``SearchParameter/[id]``, ``ValueSet/[id]``, ``CodeSystem/[id]`` fall back to
  the shipped definition (version 1, its HL7 ``lastUpdated``) when the store has no such resource;
- a type search on those types returns the store's matches first, then the shipped ones matching the
  same query, paged as one result (``search.merged_search``); the shipped ones are indexed once per
  process, lazily and type by type, in a private SQLite catalog with the server's own indexer and
  query compiler, so every parameter, modifier, ``_id``, ``url``, ``_sort``, ``_elements`` and
  ``_summary`` behaves as on stored resources (``_sort`` orders within each of the two parts);
- their ids are reserved: an update, patch or delete of a shipped definition is refused (405), so a
  stored resource never shadows one (create your own with a new id and url instead).
"""

from fhir_server.catalog.resources import CATALOG_TYPES, by_id, is_reserved
from fhir_server.catalog.search import merged_search

__all__ = ["CATALOG_TYPES", "by_id", "is_reserved", "merged_search"]
