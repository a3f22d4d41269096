"""Validation of FHIR resources: structure (R4) now; profiles and terminology build on it."""
