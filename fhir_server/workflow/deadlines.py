"""Due dates of referrals and the ``overdue`` search.

Every referral Task has a due date in ``Task.restriction.period.end``. When the requester gives none,
the server sets it from the service-level table (``data/service-levels.json``: per referral category
and priority, counted from ``Task.authoredOn``), so deadlines are the programme's data, not code.
``Task?overdue=true`` finds the tasks still open whose due date has passed at the moment of the search
(a computed parameter: open status and ``due-date`` ended before now, so a task due on a date is
overdue once that whole day has passed; compiled by every backend like any other search); combine it
with ``owner``, ``requester`` or ``patient.district``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_server import canonical
from fhir_server.interactions.errors import FhirError
from fhir_server.search import registry
from fhir_server.search.query import AllOf, AnyOf
from fhir_server.security.referrals import OPEN_STATUSES

PRIORITIES = ("routine", "urgent", "asap", "stat")
_CATEGORY_SYSTEMS = (
    canonical.code_system(canonical.CS_REFERRAL_CATEGORY),
    canonical.code_system(canonical.CS_WORKFLOW),
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@cache
def service_levels() -> dict[str, Any]:
    """The shipped service-level table (see its ``description``)."""
    data = resources.files("fhir_server.workflow").joinpath("data/service-levels.json").read_bytes()
    table: dict[str, Any] = orjson.loads(data)
    return table


def allowed_time(category: str | None, priority: str | None) -> timedelta:
    """How long a referral of this category and priority has before it is due."""
    table = service_levels()
    levels = table["categories"].get(category or "", table["default"])
    level = levels.get(priority if priority in PRIORITIES else "routine") or levels["routine"]
    return timedelta(days=level.get("days", 0), hours=level.get("hours", 0))


def category_of(*resources_: dict[str, Any] | None) -> str | None:
    """The referral category (or workflow task kind) the first of these resources names."""
    for resource in resources_:
        if not resource:
            continue
        concepts = resource.get("category")
        concepts = concepts if isinstance(concepts, list) else [resource.get("code")]
        for concept in concepts:
            codings = concept.get("coding") if isinstance(concept, dict) else None
            for coding in codings if isinstance(codings, list) else []:
                if isinstance(coding, dict) and coding.get("system") in _CATEGORY_SYSTEMS:
                    code = coding.get("code")
                    if isinstance(code, str):
                        return code
    return None


def due_date(start: str | None, allowed: timedelta, now: datetime | None = None) -> str:
    """``start`` (a FHIR date or dateTime; None: now) plus ``allowed``, in the same precision."""
    if isinstance(start, str) and _DATE.match(start):
        days = allowed.days + (1 if allowed.seconds else 0)
        return (date.fromisoformat(start) + timedelta(days=days)).isoformat()
    moment = None
    if isinstance(start, str) and len(start) > 10:
        try:
            moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        moment = now or datetime.now(UTC)
    return (moment + allowed).isoformat(timespec="seconds").replace("+00:00", "Z")


def due_of(task: dict[str, Any]) -> str | None:
    restriction = task.get("restriction")
    period = restriction.get("period") if isinstance(restriction, dict) else None
    end = period.get("end") if isinstance(period, dict) else None
    return end if isinstance(end, str) else None


def set_default_due(task: dict[str, Any], request: dict[str, Any] | None) -> bool:
    """Give a Task that names no due date the one its category and priority allow; True if set."""
    if due_of(task) is not None:
        return False
    priority = task.get("priority") or (request or {}).get("priority")
    allowed = allowed_time(category_of(request, task), priority if isinstance(priority, str) else None)
    restriction = dict(task["restriction"]) if isinstance(task.get("restriction"), dict) else {}
    period = dict(restriction["period"]) if isinstance(restriction.get("period"), dict) else {}
    period["end"] = due_date(task.get("authoredOn"), allowed)
    restriction["period"] = period
    task["restriction"] = restriction
    return True


def is_overdue(task: dict[str, Any], now: datetime | None = None) -> bool:
    """The Python twin of ``overdue=true`` (the sweep uses the search; this is for one resource)."""
    due = due_of(task)
    if task.get("status") not in OPEN_STATUSES or due is None:
        return False
    from fhir_server.search.values import date_range

    bounds = date_range(due)
    moment = now or datetime.now(UTC)
    return bounds is not None and bounds[1] < int(moment.timestamp() * 1000)


# --- the computed search parameter -----------------------------------------------------------------


def _now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _overdue(parser: Any, name: str, raw: str, depth: int) -> Any:
    if ":" in name:
        raise FhirError(
            400, f"Invalid search parameter '{name}': overdue takes no modifier", expression=[name]
        )
    if raw not in ("true", "false"):
        raise FhirError(
            400, f"Invalid search parameter '{name}': use overdue=true or overdue=false", expression=[name]
        )
    now = _now_instant()
    statuses = ",".join(OPEN_STATUSES)
    if raw == "true":
        return AllOf(
            (
                parser.condition("Task", "status", statuses, depth + 1),
                parser.condition("Task", "due-date", f"eb{now}", depth + 1),
            )
        )
    return AnyOf(
        (
            parser.condition("Task", "status:not", statuses, depth + 1),
            parser.condition("Task", "due-date:missing", "true", depth + 1),
            parser.condition("Task", "due-date", f"ge{now}", depth + 1),
        )
    )


registry.register_computed("Task", "overdue", canonical.search_parameter(canonical.SP_TASK_OVERDUE), _overdue)
