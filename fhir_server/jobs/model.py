"""A background job as it is recorded in the store (one JSON record per job in the key/value area)."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

NAMESPACE = "jobs"

State = Literal["queued", "running", "paused", "completed", "failed", "cancelled"]
ACTIVE: tuple[State, ...] = ("queued", "running", "paused")
FINISHED: tuple[State, ...] = ("completed", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside a job (by ``JobHandle.save``) when it must stop: cancelled, paused or shut down."""


def now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Job:
    """One job. ``params`` are fixed at submission; ``checkpoint`` is whatever the kind needs to resume.

    ``lease_holder``/``lease_until`` (epoch seconds) say which runner works on it and until when it
    must renew; a running job whose lease ran out belongs to nobody and is picked up again.
    """

    id: str
    kind: str
    owner: str | None  # the client id that asked for it (None: the server itself)
    params: dict[str, Any]
    state: State = "queued"
    progress: dict[str, Any] = field(default_factory=dict)  # done, total, message
    checkpoint: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created: str = field(default_factory=now_instant)
    updated: str = field(default_factory=now_instant)
    finished: str | None = None
    lease_holder: str | None = None
    lease_until: float = 0.0
    cancel_requested: bool = False
    pause_requested: bool = False
    attempts: int = 0
    expires: float | None = None  # epoch seconds after which a finished job (and its output) goes away

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def but(self, **changes: Any) -> Job:
        return replace(self, updated=now_instant(), **changes)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def lease_expired(self, at: float | None = None) -> bool:
        return self.lease_until <= (time.time() if at is None else at)
