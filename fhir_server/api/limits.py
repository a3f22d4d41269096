"""Input limits checked at the HTTP edge, before anything parses or stores the input.

Each limit is a ``TERMTEM_*`` setting (``config.Settings``; docs/limits.md) and is refused with an
OperationOutcome: 413 for a body too large, 400 for JSON nested too deep or an ETag header too long,
414 for a URL too long, 431 for headers too large and 408 for a body that stops arriving. A refusal
that leaves part of the body unread also closes the connection, so the rest is never parsed as a request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request

from fhir_server import fhirjson
from fhir_server.interactions.errors import FhirError

if TYPE_CHECKING:
    from fhir_server.config import Settings

CLOSE = {"Connection": "close"}
_ETAG_HEADERS = ("if-match", "if-none-match")


def _too_large(limit: int) -> FhirError:
    return FhirError(
        413, f"The body is larger than the limit of {limit} bytes", code="too-costly", headers=dict(CLOSE)
    )


def check_head(request: Request, settings: Settings) -> None:
    """URL, header and ETag sizes (the HTTP server bounds the memory; this gives the clear answer)."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query: bytes = request.scope.get("query_string") or b""
    if len(query) > settings.max_query_length:
        raise FhirError(
            414,
            f"The query string is longer than the limit of {settings.max_query_length}",
            code="too-costly",
        )
    if len(raw_path) + len(query) + 1 > settings.max_url_length:
        raise FhirError(
            414, f"The URL is longer than the limit of {settings.max_url_length}", code="too-costly"
        )
    raw = request.scope.get("headers") or []
    if sum(len(name) + len(value) + 4 for name, value in raw) > settings.max_header_bytes:
        raise FhirError(
            431,
            f"The request headers are larger than the limit of {settings.max_header_bytes} bytes",
            code="too-costly",
            headers=dict(CLOSE),
        )
    for name in _ETAG_HEADERS:
        value = request.headers.get(name)
        if value is not None and len(value) > settings.max_etag_length:
            label = "If-Match" if name == "if-match" else "If-None-Match"
            raise FhirError(
                400,
                f"{label} is longer than the limit of {settings.max_etag_length} characters",
                expression=[label],
            )


async def read_body(request: Request, settings: Settings, max_bytes: int | None = None) -> bytes:
    """The whole body, refused as soon as it passes ``max_bytes`` or stops arriving in time.

    The declared Content-Length is checked before reading; a chunked or lying body is counted as it
    comes. ``body_read_timeout`` bounds the wait for each chunk and ``body_total_timeout`` the whole.
    """
    limit = settings.max_body_bytes if max_bytes is None else max_bytes
    declared = request.headers.get("content-length")
    declared = (declared or "").strip()
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise _too_large(limit)
    if getattr(request, "_body", None) is not None:  # already read (and perhaps rewritten) once
        if len(request._body) > limit:
            raise _too_large(limit)
        return request._body
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.body_total_timeout
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        wait = min(settings.body_read_timeout, deadline - loop.time())
        try:
            async with asyncio.timeout(max(wait, 0)):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise FhirError(
                408,
                "The request body did not arrive in time "
                f"({settings.body_read_timeout:g} s without data, {settings.body_total_timeout:g} s in all)",
                code="timeout",
                headers=dict(CLOSE),
            ) from None
        except ClientDisconnect:
            raise FhirError(400, "The client closed the connection before sending the whole body") from None
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body
    return body


def check_json_depth(data: bytes, settings: Settings) -> None:
    """400 when a JSON body nests deeper than ``max_json_depth`` (checked on the bytes, before parsing)."""
    fhirjson.check_depth(data, settings.max_json_depth)
