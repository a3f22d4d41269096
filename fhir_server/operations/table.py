"""Every ``$operation`` the server offers. The CapabilityStatement is generated from this list."""

from __future__ import annotations

from fhir_server.operations.registry import Operation

OPERATIONS: list[Operation] = []
