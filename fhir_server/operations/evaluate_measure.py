"""``Measure/$evaluate-measure`` and ``Measure/[id]/$evaluate-measure`` (R4): a MeasureReport.

Parameters: ``periodStart``, ``periodEnd`` (dates; required), ``measure`` (at type level: the Measure's
id or canonical URL), ``reportType`` (``summary`` default, or ``individual``) and
``subject`` (``Patient/[id]``, ``Group/[id]``, or ``Organization/[id]``: a district office stands for
its district, any other agency for the units it serves). Admins and committees get figures from the
analytics warehouse (committees: whole calendar quarters or years only, cells under five children
withheld and every figure perturbed by its cell key, see ``analytics.measures.protect``); any other role
gets them computed from what it may see.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import orjson

from fhir_server.analytics.measures.evaluate import Subject, evaluate
from fhir_server.analytics.measures.plan import MeasureError, MeasurePlan, compile_measure
from fhir_server.analytics.measures.protect import published_period
from fhir_server.analytics.measures.report import measure_report
from fhir_server.analytics.service import analytics_of
from fhir_server.interactions.errors import FhirError, bad_request
from fhir_server.operations.registry import OperationRequest, OperationResult, parameter_values

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_KNOWN = {"periodStart", "periodEnd", "measure", "reportType", "subject", "practitioner", "lastReceivedOn"}
_REPORT_TYPES = ("summary", "individual")


def _one(parameters: dict[str, Any], name: str) -> Any:
    values = parameter_values(parameters, name)
    if len(values) > 1:
        raise bad_request(f"{name} may be given once", [name])
    return values[0] if values else None


def period_bound(value: Any, name: str, *, end: bool) -> date:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) as the first (start) or last (end) day it covers."""
    m = _DATE.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise bad_request(f"{name} must be a date (YYYY-MM-DD, YYYY-MM or YYYY), not {value!r}", [name])
    year, month, day = int(m[1]), m[2], m[3]
    try:
        if day is not None:
            return date(year, int(month), int(day))
        if month is not None:
            first = date(year, int(month), 1)
            if not end:
                return first
            return date(year + (first.month == 12), first.month % 12 + 1, 1) - timedelta(days=1)
        return date(year, 12, 31) if end else date(year, 1, 1)
    except ValueError:
        raise bad_request(f"{name} is not a real date: {value!r}", [name]) from None


async def _measure(request: OperationRequest) -> dict[str, Any]:
    store = request.context.store
    if request.id is not None:
        if _one(request.parameters, "measure") is not None:
            raise bad_request(
                "measure is given by the URL; do not send the measure parameter too", ["measure"]
            )
        stored = await store.read("Measure", request.id)
        if stored is None or stored.deleted:
            raise FhirError(404, f"Measure/{request.id} is not known", code="not-found")
        return orjson.loads(stored.body)
    reference = _one(request.parameters, "measure")
    if not isinstance(reference, str) or not reference.strip():
        raise bad_request(
            "Name the measure: Measure/[id]/$evaluate-measure, or the measure parameter", ["measure"]
        )
    text = reference.strip()
    if "/" not in text or text.startswith("Measure/"):
        stored = await store.read("Measure", text.removeprefix("Measure/"))
        if stored is not None and not stored.deleted:
            return orjson.loads(stored.body)
    else:
        from fhir_server.interactions.search import find_matches

        url, _, version = text.partition("|")
        query = f"url={url}" + (f"&version={version}" if version else "")
        matches = await find_matches(request.context, None, "Measure", query, limit=2)
        if matches:
            return orjson.loads(matches[0].body)
    raise FhirError(404, f"No Measure is known as {text!r}", code="not-found", expression=["measure"])


async def _subject(request: OperationRequest, plan: MeasurePlan, value: Any) -> Subject | None:
    if value is None:
        return None
    text = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(text, str) or text.count("/") != 1:
        raise bad_request("subject must be Patient/[id], Group/[id] or Organization/[id]", ["subject"])
    rtype, rid = text.strip().split("/")
    if rtype not in ("Patient", "Group", "Organization"):
        raise bad_request("subject must be Patient/[id], Group/[id] or Organization/[id]", ["subject"])
    store = request.context.store
    stored = await store.read(rtype, rid)
    if stored is None or stored.deleted:
        raise FhirError(404, f"The subject {text} is not known", code="not-found", expression=["subject"])
    resource = orjson.loads(stored.body)
    if rtype == "Patient":
        return Subject(patients=(rid,))
    if rtype == "Group":
        members = []
        for member in resource.get("member", []) or []:
            ref = (member.get("entity") or {}).get("reference", "") if isinstance(member, dict) else ""
            if isinstance(ref, str) and ref.startswith("Patient/"):
                members.append(ref.split("/", 1)[1])
        return Subject(patients=tuple(members))
    kinds = {
        c.get("code")
        for t in resource.get("type", []) or []
        for c in (t.get("coding", []) or [])
        if isinstance(c, dict)
    }
    if "district-office" in kinds:
        from fhir_server.analytics.views.library import shipped_view

        rows = shipped_view("agencies").rows(resource)
        district = rows[0][4] if rows else None
        if not district:
            raise bad_request(
                f"{text} is a district office without a DOPA district in its address", ["subject"]
            )
        return Subject(district=district)
    return Subject(agency=rid)


def _role(request: OperationRequest) -> Any:
    principal = request.context.principal
    return getattr(principal, "role", None)


async def evaluate_measure(request: OperationRequest) -> OperationResult:
    parameters = request.parameters
    unknown = sorted({p.get("name") for p in parameters.get("parameter", [])} - _KNOWN)
    if unknown:
        raise bad_request(f"Unknown parameter '{unknown[0]}' for $evaluate-measure", [str(unknown[0])])
    start_raw, end_raw = _one(parameters, "periodStart"), _one(parameters, "periodEnd")
    if start_raw is None or end_raw is None:
        raise bad_request(
            "periodStart and periodEnd are required", ["periodStart" if start_raw is None else "periodEnd"]
        )
    start, end = (
        period_bound(start_raw, "periodStart", end=False),
        period_bound(end_raw, "periodEnd", end=True),
    )
    if start > end:
        raise bad_request("periodStart is after periodEnd", ["periodStart"])
    report_type = _one(parameters, "reportType") or "summary"
    if report_type == "subject-list":
        raise FhirError(
            400,
            "reportType subject-list is not offered: list children with a search or a view instead",
            code="not-supported",
            expression=["reportType"],
        )
    if report_type not in _REPORT_TYPES:
        raise bad_request(f"reportType must be one of {', '.join(_REPORT_TYPES)}", ["reportType"])
    role = _role(request)
    aggregates_only = bool(getattr(role, "aggregates_only", False))
    subject_param = _one(parameters, "subject")
    if aggregates_only and (
        report_type != "summary" or str(subject_param or "").startswith(("Patient/", "Group/"))
    ):
        raise FhirError(
            403,
            f"Role '{role.name}' sees summary reports only, never one child's or a list of children",
            code="forbidden",
        )
    if aggregates_only and not published_period(start, end):
        raise FhirError(
            403,
            f"Role '{role.name}' may ask for a whole calendar quarter or a whole calendar year"
            " (e.g. periodStart=2025-04-01&periodEnd=2025-06-30, or periodStart=2025&periodEnd=2025):"
            " figures over overlapping periods of one's choosing could be subtracted to reveal small cells",
            code="forbidden",
            expression=["periodStart", "periodEnd"],
        )
    if report_type == "individual" and not str(
        (subject_param or {}).get("reference") if isinstance(subject_param, dict) else subject_param or ""
    ).startswith("Patient/"):
        raise bad_request("an individual report needs subject=Patient/[id]", ["subject"])
    measure = await _measure(request)
    analytics = analytics_of(request.context.extras["request"].http.app.state)
    try:
        plan = analytics.plan(measure)
    except MeasureError as exc:
        raise FhirError(
            422, f"This Measure cannot be evaluated: {exc.message}", code="invalid", expression=[exc.where]
        ) from None
    subject = await _subject(request, plan, subject_param)
    guard = request.context.extras.get("guard")
    if aggregates_only:
        result = await analytics.evaluate(plan, start, end, subject, protected=True)
    elif guard is None or guard.unrestricted():
        result = await analytics.evaluate(plan, start, end, subject)
    else:
        result = await _evaluate_visible(request, plan, start, end, subject)
    subject_text = subject_param.get("reference") if isinstance(subject_param, dict) else subject_param
    report = measure_report(result, suppress=aggregates_only, report_type=report_type, subject=subject_text)
    return OperationResult(body=report)


async def _evaluate_visible(
    request: OperationRequest, plan: MeasurePlan, start: date, end: date, subject: Subject | None
) -> Any:
    """For roles bound by consent: a warehouse of exactly what this caller may see, built for the request."""
    import asyncio

    from fhir_server.analytics.views.run import RunOptions, visible_bodies
    from fhir_server.analytics.warehouse import Warehouse

    class _Visible:
        def __init__(self) -> None:
            self.options = RunOptions()

        async def last_change(self) -> int:
            return 0  # built for this request only: never refreshed from the change feed

        async def iterate(self, resource_type: str) -> Any:
            async for body in visible_bodies(request.context, resource_type, self.options):
                yield _Body(body)

    warehouse = Warehouse()
    try:
        await warehouse.build(_Visible())
        own_plan = compile_measure(plan.resource, warehouse.columns())
        return await asyncio.to_thread(evaluate, warehouse.query, own_plan, start, end, subject, True)
    finally:
        warehouse.close()


class _Body:
    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body
