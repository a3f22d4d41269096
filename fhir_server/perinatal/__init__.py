"""Pregnancy, birth and the newborn: the risk flags the server derives from them.

The records themselves are ordinary Thai-profiled FHIR resources (profiles ``th-pregnancy``,
``th-antenatal-visit``, ``th-antenatal-screening``, ``th-delivery``, ``th-birth``,
``th-birth-observation``, ``th-perinatal-visit``, ``th-newborn-vitamin-k``; see ``docs/pregnancy.md``):
the mother's pregnancy and everything about it are hers (her Patient compartment), the newborn's birth
record is the child's and points at the mother's pregnancy. This package adds what is computed:

    on_written(tx, stored, resource) / on_deleted(tx, current)   write-path hooks (``derive``)
    flags.newborn_flag(observation, source), flags.pregnancy_flags(...)   the rules, pure
    rules()   the thresholds, shipped as data (``data/risk-rules.json``)
"""

from fhir_server.perinatal.derive import on_deleted, on_written
from fhir_server.perinatal.rules import rules

__all__ = ["on_deleted", "on_written", "rules"]
