"""``python -m fhir_server`` is the ``termtem`` command."""

from fhir_server.cli import main

# Guarded: worker processes started with "spawn" (export de-identification) import the main module.
if __name__ == "__main__":
    main()
