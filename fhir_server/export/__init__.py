"""FHIR Bulk Data export: kick-off, background job, NDJSON files, cohorts and de-identification.

``service`` holds the flow (kick-off, status, cancel, files) the HTTP layer and the CLI call; ``job``
is the background job kind; ``request`` reads the kick-off parameters; ``cohort`` turns Groups into
children; ``deid``, ``pseudonyms`` and ``kanon`` de-identify for research (``docs/deidentification.md``).
"""
