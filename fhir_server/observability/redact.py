"""What may be written to a log or a terminal: URLs without secrets, request targets without identifiers."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

_SECRET_KEYS = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)
# Query parameters whose values steer the search rather than select people: safe to log as they are.
_SAFE_VALUES = frozenset(
    {
        "_count",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_format",
        "_pretty",
        "_include",
        "_revinclude",
        "_type",
        "_since",
        "_at",
        "mode",
    }
)
# A run of 13 digits is what a Thai citizen ID looks like, wherever a client puts one (even in a path).
_CID_LIKE = re.compile(r"\d{13}")
_UNPRINTABLE = re.compile(r"[\x00-\x20\x7f-\x9f]")


def _printable(text: str) -> str:
    """Control characters and spaces percent-encoded, so one request is always one log line."""
    return _UNPRINTABLE.sub(lambda m: f"%{ord(m.group()):02X}", text)


def redact_url(url: str) -> str:
    """``url`` with any password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hosts}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_SECRET_KEYS.search(k) for k, _ in pairs):
        query = "&".join(
            f"{k}={'***' if _SECRET_KEYS.search(k) else quote(v, safe='/:,.-_')}" for k, v in pairs
        )
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret (urlunsplit would also rewrite sqlite:/// as sqlite:/)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def loggable_target(path: str, query_string: str) -> str:
    """The request path, with query values that could identify someone replaced by ``*``.

    Parameter names stay (they say what kind of request it was); values stay only for result controls
    such as ``_count`` and ``_summary``. CID-like digit runs are masked in the path as well.
    """
    safe_path = _printable(_CID_LIKE.sub("*" * 13, path))
    if not query_string:
        return safe_path
    parts = []
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        name = _CID_LIKE.sub("*" * 13, key)
        if key in _SAFE_VALUES:
            parts.append(f"{name}={quote(_CID_LIKE.sub('*' * 13, value), safe='/:,.-_*')}")
        else:
            parts.append(f"{quote(name, safe='/:,.-_*$')}=*")
    return f"{safe_path}?{'&'.join(parts)}"
