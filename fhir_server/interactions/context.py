"""What every interaction needs to know about the request it serves, free of HTTP types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.storage.base import Store


@dataclass
class RequestContext:
    store: Store
    settings: Settings
    # Absolute FHIR base URL as the client sees it, without trailing slash: http://host:8080/fhir
    base_url: str
    # Prefer header parts: return=minimal|representation|OperationOutcome, handling=strict|lenient
    prefer_return: str | None = None
    prefer_handling: str | None = None
    # The authenticated caller (fhir_server.security), None when auth is off.
    principal: Any = None
    # Free-form extras for cross-cutting concerns (audit, consent) without widening every signature.
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def strict(self) -> bool:
        return self.prefer_handling == "strict"
