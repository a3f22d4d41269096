"""An R4 Subscription as this server reads it: criteria, channel, payload content, headers, heartbeat.

R4 ``Subscription`` resources with a search as ``criteria`` (``Task?owner=Organization/x``) and the
R5 Subscriptions Backport IG's channel extensions: payload content (``empty``, ``id-only``,
``full-resource``) on ``channel.payload``, heartbeat period, timeout and max count on ``channel``.
``parse`` turns a stored Subscription into a ``Subscription``; ``check`` is the write-time check
(422 naming the element at fault).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
EXT_PAYLOAD_CONTENT = f"{BACKPORT}/StructureDefinition/backport-payload-content"
EXT_HEARTBEAT = f"{BACKPORT}/StructureDefinition/backport-heartbeat-period"
EXT_TIMEOUT = f"{BACKPORT}/StructureDefinition/backport-timeout"
EXT_MAX_COUNT = f"{BACKPORT}/StructureDefinition/backport-max-count"
STATUS_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-status-r4"
NOTIFICATION_PROFILE = f"{BACKPORT}/StructureDefinition/backport-subscription-notification-r4"

CHANNELS = ("rest-hook", "websocket")
CONTENTS = ("empty", "id-only", "full-resource")
MIME_TYPES = ("application/fhir+json", "application/json")
MIN_HEARTBEAT = 10  # seconds
MAX_COUNT = 100
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)$")
# Headers the server sets itself; a subscription cannot replace them.
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "connection", "te", "upgrade", "expect"}
)


@dataclass(frozen=True)
class Subscription:
    id: str
    version: int
    status: str
    criteria: str
    resource_type: str
    params: tuple[tuple[str, str], ...]
    channel: str
    endpoint: str | None
    content: str  # empty | id-only | full-resource
    headers: tuple[tuple[str, str], ...] = ()
    heartbeat: int | None = None  # seconds
    timeout: float | None = None  # seconds
    max_count: int = MAX_COUNT  # events per notification: the channel's max count, else the server's cap
    end: str | None = None
    owner: str | None = None  # the writing agency (Organization/ID)
    subscriber: str | None = None  # the client whose subscription it is
    extra: dict[str, Any] = field(default_factory=dict)


def _bad(message: str, expression: str) -> FhirError:
    return FhirError(422, message, code="invalid", expression=[expression])


def _extension(element: Any, url: str) -> Any:
    if not isinstance(element, dict):
        return None
    for ext in element.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            for key, value in ext.items():
                if key.startswith("value"):
                    return value
    return None


def split_criteria(criteria: Any) -> tuple[str, list[tuple[str, str]]]:
    """(resource type, search parameters) of ``Type?query``; 422 at Subscription.criteria otherwise."""
    if not isinstance(criteria, str) or not criteria.strip():
        raise _bad(
            "A Subscription needs criteria: a search such as Task?owner=Organization/x",
            "Subscription.criteria",
        )
    path, _, query = criteria.strip().partition("?")
    if not definitions.is_resource_type(path):
        raise _bad(
            f"Subscription.criteria must start with a resource type ('{path}' is not one)",
            "Subscription.criteria",
        )
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise _bad(f"Subscription.criteria has a malformed query ({exc})", "Subscription.criteria") from None
    return path, params


def parse_query(resource_type: str, params: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> Any:
    """The query tree of the criteria (strict: an unknown parameter is an error, not ignored)."""
    from fhir_server.search import registry
    from fhir_server.search.query import parse_search

    for name, _ in params:
        code = name.split(":", 1)[0].split(".", 1)[0]
        if name.startswith("_") and code not in ("_id", "_lastUpdated", "_tag", "_profile", "_security"):
            raise FhirError(
                400, f"'{name}' is a result control, not a criterion of a subscription", expression=[name]
            )
        if registry.get(resource_type, code) is None and registry.computed(resource_type, code) is not None:
            raise FhirError(
                400,
                f"'{code}' is computed at the moment of a search and cannot decide a notification"
                " (overdue referrals are announced as Communications to their requester: subscribe to"
                " Communication?recipient=Organization/ID)",
                expression=[name],
            )
    return parse_search(resource_type, list(params), base_url="", strict=True, default_count=1, max_count=1)


def parse(resource: dict[str, Any], *, version: int = 0) -> Subscription:
    """A stored (or incoming) Subscription; ``FhirError`` 422 naming the element when unusable."""
    resource_type, params = split_criteria(resource.get("criteria"))
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        raise _bad("A Subscription needs a channel", "Subscription.channel")
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise _bad(
            f"Channel type '{kind}' is not supported (use {' or '.join(CHANNELS)})",
            "Subscription.channel.type",
        )
    endpoint = channel.get("endpoint")
    if kind == "rest-hook" and (not isinstance(endpoint, str) or not endpoint):
        raise _bad("A rest-hook channel needs an endpoint (an https URL)", "Subscription.channel.endpoint")
    payload = channel.get("payload")
    content = _extension(channel.get("_payload"), EXT_PAYLOAD_CONTENT)
    if payload is not None and payload not in MIME_TYPES:
        raise _bad(
            f"Payload '{payload}' is not supported (use {' or '.join(MIME_TYPES)})",
            "Subscription.channel.payload",
        )
    if content is None:
        content = "full-resource" if payload else "empty"
    if content not in CONTENTS:
        raise _bad(
            f"Payload content '{content}' is not one of {', '.join(CONTENTS)}",
            "Subscription.channel.payload.extension",
        )
    headers = []
    raw_headers = channel.get("header") or []
    for n, text in enumerate(raw_headers if isinstance(raw_headers, list) else [raw_headers]):
        match = _HEADER.match(text) if isinstance(text, str) else None
        if match is None:
            raise _bad(
                f"Header '{text}' is not 'Name: value' on one line", f"Subscription.channel.header[{n}]"
            )
        if match.group(1).lower() in _RESERVED_HEADERS:
            raise _bad(f"Header {match.group(1)} is set by the server", f"Subscription.channel.header[{n}]")
        headers.append((match.group(1), match.group(2).strip()))
    heartbeat = _extension(channel, EXT_HEARTBEAT)
    if heartbeat is not None and (not isinstance(heartbeat, int) or heartbeat < MIN_HEARTBEAT):
        raise _bad(
            f"The heartbeat period must be at least {MIN_HEARTBEAT} seconds", "Subscription.channel.extension"
        )
    timeout = _extension(channel, EXT_TIMEOUT)
    if timeout is not None and (not isinstance(timeout, int) or timeout < 1 or timeout > 120):
        raise _bad("The timeout must be 1 to 120 seconds", "Subscription.channel.extension")
    max_count = _extension(channel, EXT_MAX_COUNT)
    if max_count is not None and (not isinstance(max_count, int) or not 1 <= max_count <= MAX_COUNT):
        raise _bad(f"The max count must be 1 to {MAX_COUNT}", "Subscription.channel.extension")
    return Subscription(
        id=str(resource.get("id") or ""),
        version=version,
        status=str(resource.get("status") or "requested"),
        criteria=str(resource.get("criteria")),
        resource_type=resource_type,
        params=tuple(params),
        channel=kind,
        endpoint=endpoint if isinstance(endpoint, str) else None,
        content=content,
        headers=tuple(headers),
        heartbeat=heartbeat,
        timeout=float(timeout) if timeout else None,
        max_count=max_count or MAX_COUNT,
        end=resource.get("end") if isinstance(resource.get("end"), str) else None,
    )


def conditions(subscription: Subscription) -> tuple[Any, ...]:
    """The criteria as a query tree (parsed again by whoever matches: never stale after a reindex)."""
    try:
        return tuple(parse_query(subscription.resource_type, subscription.params).conditions)
    except FhirError as exc:
        raise _bad(
            f"Subscription.criteria cannot be searched: {exc.diagnostics}", "Subscription.criteria"
        ) from None
