"""``python -m fhir_server`` is the ``termtem`` command."""

from fhir_server.cli import main

main()
