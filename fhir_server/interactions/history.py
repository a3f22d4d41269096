"""history at instance, type and system level, newest first, with keyset paging."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server import catalog
from fhir_server.interactions import writes
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError
from fhir_server.interactions.results import Outcome, etag
from fhir_server.storage.base import HistoryPage, HistoryQuery, StoredResource

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def _instant(value: str, name: str, *, upper: bool) -> str:
    """A date/dateTime/instant as a UTC instant string comparable with stored lastUpdated values.

    A partial value stands for its whole range: ``upper`` picks the end (for ``_at``) or start.
    """
    text = value.strip().replace(" ", "+")
    try:
        if len(text) in (4, 7, 10):  # YYYY, YYYY-MM, YYYY-MM-DD
            parts = [int(p) for p in text.split("-")]
            year, month, day = parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1
            start = datetime(year, month, day, tzinfo=UTC)
            if not upper:
                moment = start
            elif len(text) == 4:
                moment = datetime(year + 1, 1, 1, tzinfo=UTC)
            elif len(text) == 7:
                moment = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
            else:
                moment = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError("a time zone is required")
    except ValueError as exc:
        raise FhirError(400, f"{name}: '{value}' is not a valid instant ({exc})", expression=[name]) from None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# Page sizes and history cursors: ASCII digits that fit a 64-bit integer (str.isdigit() accepts '²').
_WHOLE = re.compile(r"[0-9]{1,18}")


def _count(value: str | None, ctx: RequestContext) -> int:
    if value is None:
        return ctx.settings.default_page_size
    if not _WHOLE.fullmatch(value):
        raise FhirError(400, f"_count must be a whole number, not '{value[:40]}'", expression=["_count"])
    return max(1, min(int(value), ctx.settings.max_page_size))


def entry(ctx: RequestContext, stored: StoredResource) -> dict[str, Any]:
    url = f"{stored.resource_type}/{stored.id}"
    item: dict[str, Any] = {"fullUrl": f"{ctx.base_url}/{url}"}
    if not stored.deleted:
        item["resource"] = orjson.Fragment(stored.body)
    item["request"] = {
        "method": stored.method,
        "url": stored.resource_type if stored.method == "POST" else url,
    }
    item["response"] = {
        "status": _STATUS[stored.method],
        "etag": etag(stored.version),
        "lastModified": stored.last_updated,
    }
    return item


async def history(
    ctx: RequestContext, resource_type: str | None, id_: str | None, params: list[tuple[str, str]]
) -> Outcome:
    if resource_type is not None:
        writes.check_type_known(resource_type)
    values = dict(params)
    since = _instant(values["_since"], "_since", upper=False) if "_since" in values else None
    at = _instant(values["_at"], "_at", upper=True) if "_at" in values else None
    count = _count(values.get("_count"), ctx)
    cursor = values.get("_page")
    if cursor is not None and not _WHOLE.fullmatch(cursor):
        raise FhirError(
            400, f"_page '{cursor[:40]}' is not a page cursor of this server", expression=["_page"]
        )
    page: HistoryPage | None = None
    if id_ is not None and await ctx.store.read(resource_type or "", id_) is None:
        shipped = catalog.by_id(resource_type or "", id_)  # HL7's definitions have one version
        if shipped is None:
            raise FhirError(404, f"{resource_type}/{id_} is not known", code="not-found")
        changed = shipped.last_updated
        inside = (since is None or changed >= since) and (at is None or changed <= at)
        page = HistoryPage([shipped] if inside else [], None, 1 if inside else 0)
    if page is None:
        page = await ctx.store.history(
            HistoryQuery(resource_type, id_, since, at, count, int(cursor) if cursor else None)
        )
    path = "/".join(p for p in (resource_type, id_) if p)
    base = f"{ctx.base_url}/{path + '/' if path else ''}_history"
    kept = [(k, v) for k, v in params if k in ("_since", "_at", "_count")]
    self_params = [*kept, *([("_page", cursor)] if cursor else [])]
    links = [{"relation": "self", "url": base + (f"?{urlencode(self_params)}" if self_params else "")}]
    if page.next_before_seq is not None:
        links.append(
            {"relation": "next", "url": f"{base}?{urlencode([*kept, ('_page', str(page.next_before_seq))])}"}
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    bundle["entry"] = [entry(ctx, stored) for stored in page.entries]
    return Outcome(200, body=bundle)
