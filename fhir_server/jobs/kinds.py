"""The registry of job kinds: what each kind of background job runs, and how it cleans up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhir_server.jobs.model import Job
    from fhir_server.jobs.runner import JobHandle

RunFunction = Callable[["JobHandle", "dict[str, Any] | None"], Awaitable["dict[str, Any] | None"]]
CleanupFunction = Callable[[Any, "Job"], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    """``run(job, checkpoint)`` does the work from ``checkpoint`` (None: from the start) and returns the
    job's result (stored on the record). ``on_cancel(store, job)`` undoes partial output after a
    cancellation; ``on_expire(store, job)`` removes a finished job's output when it expires.
    ``keep_seconds``: how long a finished job stays recorded (None: for ever); a job whose params hold
    ``keep_seconds`` keeps that long instead.
    ``max_attempts``: runs that die without finishing (crash, lost lease) before it is marked failed.
    """

    name: str
    run: RunFunction
    on_cancel: CleanupFunction | None = None
    on_expire: CleanupFunction | None = None
    keep_seconds: float | None = None
    max_attempts: int = 5


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add (or replace, for reloads and tests) a job kind; returns it."""
    _KINDS[kind.name] = kind
    return kind


def get(name: str) -> JobKind | None:
    _load_builtin()
    return _KINDS.get(name)


def names() -> list[str]:
    _load_builtin()
    return sorted(_KINDS)


# Modules that register the server's own kinds: imported before any lookup, so a runner can resume a
# job of any kind after a restart even if nothing else imported its module yet. Add yours here.
BUILTIN_MODULES = ("fhir_server.search.reindex", "fhir_server.export.job", "fhir_server.identity.job")


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
