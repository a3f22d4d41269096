"""Referrals and requests for help: the cross-agency workflow and its deadlines.

The write path calls two functions for every version written (``interactions/writes.py``):
``prepare_write`` before the content is compared and stored (it checks a referral's status change and
sets what the server keeps: resolved agency references, the due date, who changed it) and
``after_write`` inside the same store transaction once the version is stored (the ServiceRequest kept
in step with its Task, a request for help opening its case). Modules:

- ``referrals``: the Task lifecycle as written (the rules table is ``security/referrals.py``);
- ``agencies``: agencies named by identifier, resolved through the agency registry;
- ``deadlines``: due dates from the service-level table (``data/service-levels.json``), ``overdue``;
- ``help_requests``: the อพม. Smart request for help (Questionnaire, routing table, triage Task);
- ``jobs``: background work on the shared job runner (overdue sweep, late reference resolution).
"""

from fhir_server.workflow.hooks import after_write, prepare_write

__all__ = ["after_write", "prepare_write"]
