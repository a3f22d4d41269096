"""The two PATCH formats FHIR R4 defines: JSON Patch (RFC 6902) and FHIRPath Patch (Parameters)."""
