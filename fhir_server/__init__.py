"""Termtem: a FHIR R4 (4.0.1) server for Thailand's child, youth and family services."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
