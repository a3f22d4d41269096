"""Keyed-hash pseudonyms and per-child date offsets for de-identified exports.

One secret per server (made once, kept in the store's key/value area so every server process shares
it) and, derived from it, one key per research project: the same child gets the same pseudonym in
every export of one project, and pseudonyms of two projects cannot be linked without the server's
secret. HMAC-SHA-256 throughout; a pseudonym is 32 hex digits (128 bits) of the HMAC of "Type/id".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

NAMESPACE = "export.secrets"
_ROOT = "pseudonym-root"
# A child's dates move by the same whole number of days in [-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS], never 0.
MAX_SHIFT_DAYS = 15
_CACHED = 20_000  # pseudonyms (about 200 bytes each) and offsets remembered at most


async def _root_secret(store: Any) -> bytes:
    while True:
        stored = await store.kv_get(NAMESPACE, _ROOT)
        if stored is not None:
            return bytes.fromhex(stored["key"])
        # Two processes may race to make it: compare-and-set lets exactly one secret win.
        await store.kv_compare_and_set(NAMESPACE, _ROOT, None, {"key": secrets.token_hex(32)})


async def project_key(store: Any, project: str) -> bytes:
    """The key of one research project (stable for the life of the store)."""
    root = await _root_secret(store)
    return hmac.new(root, b"project\x00" + project.encode(), hashlib.sha256).digest()


def child_key(patient_id: str, same_child: dict[str, str] | None = None) -> str:
    """What identifies a child for its pseudonym and its date offset: the one place to change.

    The Patient id, or, where ``same_child`` maps it (the identity layer's golden record of a child
    registered by several agencies), the golden Patient's id: one child, one pseudonym, one offset.
    """
    if same_child:
        return same_child.get(patient_id, patient_id)
    return patient_id


class Pseudonymiser:
    """Pseudonyms and offsets under one project key (pure functions of the key and the input)."""

    def __init__(self, key: bytes, same_child: dict[str, str] | None = None) -> None:
        self._key = key
        self._same_child = same_child
        # Pseudonyms and offsets that repeat (a child's, a clinic's) are worked out once; bounded by
        # count (entries are small strings), emptied when full: memory stays flat over any export.
        self._ids: dict[str, str] = {}
        self._offsets: dict[str, int] = {}

    def use(self, same_child: dict[str, str] | None) -> None:
        """Which records are one child, for the records about to be pseudonymised (a page's); the
        caches stay valid, because the links of one export never change while it runs."""
        self._same_child = same_child

    def reference(self, resource_type: str, id_: str, *, repeats: bool = True) -> str:
        """The pseudonymous id of ``resource_type/id_`` (``repeats``: worth remembering; a resource's
        own id is seen once)."""
        text = f"{resource_type}/{id_}"
        found = self._ids.get(text)
        if found is None:
            found = hmac.digest(self._key, b"id\x00" + text.encode(), "sha256").hex()[:32]
            if repeats:
                if len(self._ids) >= _CACHED:
                    self._ids.clear()
                self._ids[text] = found
        return found

    def key(self, patient_id: str) -> str:
        """What identifies the child of ``patient_id`` (``child_key``): its pseudonym, offset and
        k-anonymity decision all hang on it."""
        return child_key(patient_id, self._same_child)

    def child(self, patient_id: str) -> str:
        """The pseudonym of a child (its Patient's pseudonymous id)."""
        return self.reference("Patient", child_key(patient_id, self._same_child))

    def offset_days(self, patient_id: str) -> int:
        """The child's date shift in days: uniform over [-15, -1] and [1, 15]."""
        key = child_key(patient_id, self._same_child)
        found = self._offsets.get(key)
        if found is None:
            digest = hmac.digest(self._key, b"shift\x00" + key.encode(), "sha256")
            n = int.from_bytes(digest[:8], "big") % (2 * MAX_SHIFT_DAYS)
            found = n - MAX_SHIFT_DAYS if n < MAX_SHIFT_DAYS else n - MAX_SHIFT_DAYS + 1
            if len(self._offsets) >= _CACHED:
                self._offsets.clear()
            self._offsets[key] = found
        return found
