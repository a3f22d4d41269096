"""The HTTP/1.1 protocol `termtem serve` runs under uvicorn: uvicorn's own, with a bound on request heads
and raw UTF-8 accepted in the request target.

uvicorn's httptools protocol buffers a request's line and headers without limit (a 20 MB header is
accepted), so a client could make the server hold any amount of memory before the application sees
the request. This subclass counts the bytes of each request head as they arrive and, past
``max_header_bytes``, answers 431 with an OperationOutcome and closes the connection. Without
httptools, uvicorn's h11 protocol is used with the same bound (``h11_max_incomplete_event_size``).

RFC 3986 wants non-ASCII in a URL percent-encoded, and llhttp (the httptools parser) refuses the
request line otherwise. Real clients and people with curl send ``?name=สมศรี`` raw, and other FHIR
servers accept it; so bytes 0x80-0xFF in the request line are percent-encoded before the parser sees
them, which is exactly what a careful client would have sent. Headers and bodies pass untouched. Only
the first request line of each message is rewritten; a pipelined request's line that arrives in the
same chunk is parsed as it is.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhir_server.interactions.errors import FhirError

_LINGER_SECONDS = 2.0
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


def encode_request_line(data: bytes) -> tuple[bytes, bool]:
    """(``data`` with high bytes of its request line percent-encoded, whether the line ended in it)."""
    end = data.find(b"\n")
    head, tail = (data, b"") if end < 0 else (data[:end], data[end:])
    return _HIGH_BYTE.sub(_percent, head) + tail, end >= 0


def _answer(status: int, reason: str, error: FhirError) -> bytes:
    """A complete HTTP answer carrying ``error`` as an OperationOutcome, closing the connection."""
    body = orjson.dumps(error.outcome())
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/fhir+json; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "cache-control: no-store\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _refusal(limit: int) -> bytes:
    text = f"The request headers are larger than the limit of {limit} bytes"
    return _answer(431, "Request Header Fields Too Large", FhirError(431, text, code="too-costly"))


def uvicorn_options(max_header_bytes: int) -> dict[str, Any]:
    """The ``uvicorn.run`` options that bound request heads to ``max_header_bytes``."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: uvicorn's h11 protocol has the bound built in
        return {"http": "h11", "h11_max_incomplete_event_size": max_header_bytes}

    class BoundedHeadProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, refusing a request head longer than ``max_header_bytes`` and
        percent-encoding raw UTF-8 in request lines."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_request_line = True
            self._in_head = True  # the first request's head starts with the first byte
            self._head_bytes = 0
            self._refused = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head_bytes = 0

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_request_line = True

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to bytes that are not HTTP, as an OperationOutcome like every other error."""
            error = FhirError(400, f"The request is not valid HTTP/1.1: {msg}", code="structure")
            self.transport.write(_answer(400, "Bad Request", error))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # discarded while the refusal lingers
            received = len(data)  # the limit counts bytes as sent, before any percent-encoding
            if self._in_request_line:
                data, finished = encode_request_line(data)
                self._in_request_line = not finished
            super().data_received(data)
            if not self._in_head:
                return
            self._head_bytes += received  # a chunk that ends inside a head is all head bytes
            if self._head_bytes > max_header_bytes and not self.transport.is_closing():
                self._refused = True
                self.transport.write(_refusal(max_header_bytes))
                # Closing with unread input would reset the connection and could destroy the answer
                # before the client reads it: read and drop the rest for a moment, then close.
                self.loop.call_later(_LINGER_SECONDS, self.transport.close)

    return {"http": BoundedHeadProtocol}
