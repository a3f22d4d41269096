"""District intelligence: flat views (SQL on FHIR v2), measures per district, and the committees' dashboard.

``views`` runs ViewDefinitions over what a caller may see; ``warehouse`` keeps the shipped views
materialised and refreshed as data changes; ``measures`` evaluates the shipped Measures over them;
``dashboard`` serves the committees' web pages from the cached reports.
"""
