"""Log output: plain lines for people or JSON lines for collectors, every line carrying the request id.

The server configures logging once (``logging_config``, also handed to uvicorn so its own messages look
the same). What goes into a log is decided by the callers: the access line holds the method, a redacted
target, status, duration, client, agency and request id; never a body, a token or a password.
"""

from __future__ import annotations

import contextvars
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

LOG_FORMATS = ("plain", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("termtem_request_id", default=None)
# Fields of an access line (``extra=`` of the ``termtem.access`` logger), in the order they are printed.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client_id", "agency", "interaction")


def _instant(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request being served (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class PlainFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER rid=ID message`` (access lines: ``METHOD TARGET STATUS DURATIONms ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == "termtem.access":
            message = (
                f"{record.method} {record.path} {record.status} {record.duration_ms}ms"  # type: ignore[attr-defined]
                f" client={record.client_id or '-'} agency={record.agency or '-'}"  # type: ignore[attr-defined]
            )
        else:
            message = record.getMessage()
        request_id = getattr(record, "request_id", "-")
        line = f"{_instant(record)} {record.levelname} {record.name} rid={request_id} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message, and the access fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _instant(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def logging_config(level: str = "info", fmt: str = "plain") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and uvicorn (its own access log stays off)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
    formatter = f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'PlainFormatter'}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"termtem": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "termtem",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            "termtem": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "fhir_server": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def configure(level: str = "info", fmt: str = "plain") -> dict[str, Any]:
    """Apply ``logging_config`` to this process and return it (for uvicorn's ``log_config``)."""
    config = logging_config(level, fmt)
    logging.config.dictConfig(config)
    return config
