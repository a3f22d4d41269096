"""The client registry, kept in the store's key/value area so the CLI and the server share it."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from fhir_server.security import roles
from fhir_server.security.keys import import_jwk
from fhir_server.security.scopes import ScopeSet
from fhir_server.storage.base import Store

NAMESPACE = "security.clients"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ORG = re.compile(r"^Organization/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class ClientRecord:
    """One registered backend system. ``id`` is the OAuth client_id (the name it was registered as)."""

    id: str
    name: str
    organization: str  # Organization/ID: the agency the client writes and reads for
    role: str
    scopes: str  # the widest scopes it may ask for, space-separated
    jwks: dict[str, Any]  # its public keys
    # The research project a researcher client works for: de-identified exports of one project share
    # pseudonyms; two projects never do. Empty: the client's agency is its project.
    project: str = ""

    @property
    def scope_set(self) -> ScopeSet:
        return ScopeSet.parse(self.scopes)


def check_organization(reference: str) -> str:
    """``reference`` when it names an agency as ``Organization/ID``; ``ValueError`` otherwise."""
    if not _ORG.match(reference):
        raise ValueError(f"'{reference}' is not an Organization/ID reference")
    return reference


def validate(record: ClientRecord) -> None:
    """Refuse a record the server could not use safely (``ValueError`` says why)."""
    if not _NAME.match(record.id):
        raise ValueError(f"'{record.id}' is not a valid client name (letters, digits, . _ -; up to 64)")
    check_organization(record.organization)
    roles.get_role(record.role)
    if record.project and not _NAME.match(record.project):
        raise ValueError(f"'{record.project}' is not a valid project name (letters, digits, . _ -; up to 64)")
    if not ScopeSet.parse(record.scopes):
        raise ValueError("at least one scope is required")
    keys = record.jwks.get("keys") if isinstance(record.jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError("the JWKS must hold at least one public key")
    for key in keys:
        if not isinstance(key, dict) or "d" in key:
            raise ValueError("the JWKS must hold public keys only (a private 'd' member was found)")
        import_jwk(key)


class ClientRegistry:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, record: ClientRecord, *, replace: bool = False) -> None:
        validate(record)
        if not replace and await self._store.kv_get(NAMESPACE, record.id) is not None:
            raise ValueError(f"a client named '{record.id}' is already registered")
        await self._store.kv_put(NAMESPACE, record.id, asdict(record))

    async def get(self, client_id: str) -> ClientRecord | None:
        data = await self._store.kv_get(NAMESPACE, client_id)
        return ClientRecord(**data) if data else None

    async def list(self) -> list[ClientRecord]:
        return [ClientRecord(**value) for _, value in await self._store.kv_list(NAMESPACE)]

    async def remove(self, client_id: str) -> bool:
        return await self._store.kv_delete(NAMESPACE, client_id)
