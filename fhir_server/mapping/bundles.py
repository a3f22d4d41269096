"""Packing mapped records into FHIR transaction Bundles.

A record's entries never straddle two bundles (its internal ``urn:uuid`` references must resolve). Two
records that produce the same resource (the same child screened twice, the same guardian) share one
deterministic ``fullUrl``: inside a bundle the entry appears once, so a transaction never holds two
conditional writes for the same identifier. For conditional updates the later record's version wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fhir_server.mapping.model import MappedRecord

DEFAULT_BATCH_SIZE = 500


class _Batch:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.positions: dict[str, int] = {}
        self.records: list[MappedRecord] = []
        # "Type?identifier=system|value" of every resource in the bundle → its fullUrl.
        self.identified: dict[str, str] = {}

    def add(self, record: MappedRecord) -> None:
        self.records.append(record)
        for entry in record.entries:
            resource = entry["resource"]
            for identifier in resource.get("identifier", []):
                if identifier.get("system") and identifier.get("value"):
                    system, value = identifier["system"], identifier["value"]
                    key = f"{resource['resourceType']}?identifier={system}|{value}"
                    self.identified.setdefault(key, entry["fullUrl"])
        for entry in record.entries:
            if self.identified:
                entry = {**entry, "resource": _local_references(entry["resource"], self.identified)}
            url = entry["fullUrl"]
            at = self.positions.get(url)
            if at is None:
                self.positions[url] = len(self.entries)
                self.entries.append(entry)
            elif entry["request"]["method"] == "PUT":
                self.entries[at] = entry

    def new_entry_count(self, record: MappedRecord) -> int:
        return sum(1 for e in record.entries if e["fullUrl"] not in self.positions)


def _local_references(value: Any, identified: dict[str, str]) -> Any:
    """Conditional references to a resource written in the same bundle become its ``urn:uuid``.

    A server resolves conditional references against what is stored before the transaction's creates,
    so a reference to a Patient created in the same bundle must point at that entry instead.
    """
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            if key == "reference" and isinstance(sub, str) and "?" in sub:
                out[key] = identified.get(sub, sub)
            else:
                out[key] = _local_references(sub, identified)
        return out
    if isinstance(value, list):
        return [_local_references(v, identified) for v in value]
    return value


def transaction_bundle(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def batch_records(records: Iterable[MappedRecord], batch_size: int = DEFAULT_BATCH_SIZE
                  ) -> Iterator[tuple[dict[str, Any], list[MappedRecord]]]:
    """Transaction bundles of at most ``batch_size`` entries, each with the records it carries."""
    batch = _Batch()
    for record in records:
        if batch.entries and len(batch.entries) + batch.new_entry_count(record) > batch_size:
            yield transaction_bundle(batch.entries), batch.records
            batch = _Batch()
        batch.add(record)
    if batch.entries:
        yield transaction_bundle(batch.entries), batch.records


def to_transaction_bundles(records: Iterable[MappedRecord], batch_size: int = DEFAULT_BATCH_SIZE
                           ) -> Iterator[dict[str, Any]]:
    """Transaction bundles of at most ``batch_size`` entries (a single larger record gets its own)."""
    for bundle, _records in batch_records(records, batch_size):
        yield bundle
