"""Server settings: one dataclass, filled from the CLI and ``TERMTEM_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = Path("termtem-data")
_ON = ("on", "true", "1", "yes")


def default_store_url() -> str:
    return os.environ.get("TERMTEM_STORE") or f"sqlite:///{DEFAULT_DATA_DIR / 'termtem.sqlite'}"


class BadSetting(ValueError):
    """An environment variable whose value the server cannot use (the commands end with this one line)."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadSetting(f"{name} must be a whole number, not {raw[:40]!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise BadSetting(f"{name} must be a number of seconds, not {raw[:40]!r}") from None


@dataclass
class Settings:
    store_url: str = field(default_factory=default_store_url)
    # Path prefix of the FHIR base, e.g. http://host:port/fhir
    base_path: str = "/fhir"
    # The FHIR base URL clients use (e.g. https://termtem.example.go.th/fhir): links in answers and the
    # audience of access tokens and client assertions. Empty: the address the server listens on (never
    # a request's Host header). ``termtem serve`` requires it with auth on a non-loopback address.
    public_base_url: str = field(default_factory=lambda: os.environ.get("TERMTEM_PUBLIC_BASE_URL", ""))
    # --- input limits (docs/limits.md): each refused early with an OperationOutcome ---
    max_body_bytes: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_BODY_BYTES", 64 * 1024 * 1024))
    max_json_depth: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_JSON_DEPTH", 100))
    max_bundle_entries: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_BUNDLE_ENTRIES", 20_000))
    max_url_length: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_URL_LENGTH", 16_384))
    max_query_length: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_QUERY_LENGTH", 8_192))
    max_header_bytes: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_HEADER_BYTES", 32 * 1024))
    max_etag_length: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_ETAG_LENGTH", 256))
    # Seconds a request body may go without a byte arriving, and the most its whole upload may take.
    body_read_timeout: float = field(default_factory=lambda: _env_float("TERMTEM_BODY_READ_TIMEOUT", 30.0))
    body_total_timeout: float = field(default_factory=lambda: _env_float("TERMTEM_BODY_TOTAL_TIMEOUT", 600.0))
    default_page_size: int = field(default_factory=lambda: _env_int("TERMTEM_DEFAULT_COUNT", 20))
    max_page_size: int = field(default_factory=lambda: _env_int("TERMTEM_MAX_COUNT", 1_000))
    # Profiles every write of a type must conform to (strict mode), e.g. {"Patient": [url]}.
    required_profiles: dict[str, list[str]] = field(default_factory=dict)
    # sqlite: "normal" survives an application crash; "full" also survives power loss.
    sqlite_synchronous: str = field(default_factory=lambda: os.environ.get("TERMTEM_SQLITE_SYNC", "normal"))
    # --- security (fhir_server.security) ---
    # Auth is on unless switched off explicitly (``termtem serve --auth off``: loopback trials only).
    auth: bool = field(default_factory=lambda: os.environ.get("TERMTEM_AUTH", "on").lower() != "off")
    # Where the server keeps its own files (the token-signing key, mode 0600).
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("TERMTEM_DATA_DIR") or DEFAULT_DATA_DIR)
    )
    token_lifetime_seconds: int = field(default_factory=lambda: _env_int("TERMTEM_TOKEN_LIFETIME", 300))
    # Status for a read the caller may not see: 404 hides existence (default), 403 says "forbidden".
    forbidden_status: int = field(default_factory=lambda: _env_int("TERMTEM_FORBIDDEN_STATUS", 404))
    # --- running as a service (fhir_server.observability) ---
    # Log lines: "plain" for people, "json" for collectors; level debug, info, warning or error.
    log_format: str = field(default_factory=lambda: os.environ.get("TERMTEM_LOG_FORMAT", "plain"))
    log_level: str = field(default_factory=lambda: os.environ.get("TERMTEM_LOG_LEVEL", "info"))
    # /metrics answers loopback clients not behind a proxy, or this bearer token when set.
    metrics_token: str = field(default_factory=lambda: os.environ.get("TERMTEM_METRICS_TOKEN", ""))
    # Seconds to wait for the store at start-up (and for each connection attempt) before giving up.
    store_timeout_seconds: float = field(default_factory=lambda: _env_float("TERMTEM_STORE_TIMEOUT", 10.0))
    # Where the front page (GET /) links for documentation; no link when empty.
    docs_url: str = field(default_factory=lambda: os.environ.get("TERMTEM_DOCS_URL", ""))
    # --- background jobs (fhir_server.jobs) ---
    # Jobs one server process runs at once; a job's lease (seconds) lapses this long after its process
    # died, and then any process sharing the store resumes it; idle runners look for work this often.
    job_workers: int = field(default_factory=lambda: _env_int("TERMTEM_JOB_WORKERS", 4))
    job_lease_seconds: float = field(default_factory=lambda: _env_float("TERMTEM_JOB_LEASE", 30.0))
    job_poll_seconds: float = field(default_factory=lambda: _env_float("TERMTEM_JOB_POLL", 2.0))
    # --- bulk export (fhir_server.export) ---
    # Where export files are written (default: <data_dir>/exports; share it between server processes).
    export_dir: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["TERMTEM_EXPORT_DIR"]) if os.environ.get("TERMTEM_EXPORT_DIR") else None
        )
    )
    export_max_running: int = field(default_factory=lambda: _env_int("TERMTEM_EXPORT_MAX_RUNNING", 2))
    export_file_max_bytes: int = field(default_factory=lambda: _env_int("TERMTEM_EXPORT_FILE_MAX", 512 << 20))
    export_page_bytes: int = field(default_factory=lambda: _env_int("TERMTEM_EXPORT_PAGE_BYTES", 4 << 20))
    export_expire_seconds: float = field(default_factory=lambda: _env_float("TERMTEM_EXPORT_EXPIRE", 86400.0))
    export_retry_after: int = field(default_factory=lambda: _env_int("TERMTEM_EXPORT_RETRY_AFTER", 2))
    # Worker processes that de-identify an export's pages (0: a thread of the server process).
    export_processes: int = field(default_factory=lambda: _env_int("TERMTEM_EXPORT_PROCESSES", 1))
    # Worker processes that parse and evaluate a view run over a whole resource type (0: none; the
    # server process reads the store and writes the output meanwhile). Runs under 20,000 resources use none.
    view_processes: int = field(default_factory=lambda: _env_int("TERMTEM_VIEW_PROCESSES", 2))
    # k of k-anonymity for de-identified exports (every birth month x sex x district cell >= k children).
    export_k: int = field(default_factory=lambda: _env_int("TERMTEM_EXPORT_K", 5))

    # --- subscriptions and referral deadlines (fhir_server.subscriptions, fhir_server.workflow) ---
    # Deliver notifications and announce overdue referrals in the background (off: nothing is sent;
    # events are still recorded and retrievable with $events).
    subscription_delivery: bool = field(
        default_factory=lambda: os.environ.get("TERMTEM_SUBSCRIPTION_DELIVERY", "on").lower() in _ON
    )
    # How long a failing rest-hook endpoint is retried (exponential back-off) before its subscription
    # goes to ``error`` (its events stay retrievable with $events).
    subscription_retry_seconds: int = field(
        default_factory=lambda: _env_int("TERMTEM_SUBSCRIPTION_RETRY", 24 * 3600)
    )
    # Endpoints on loopback addresses (and plain http, only to them): local receivers, tests, demos.
    subscription_loopback: bool = field(
        default_factory=lambda: os.environ.get("TERMTEM_SUBSCRIPTION_LOOPBACK", "off").lower() in _ON
    )
    # Private, link-local and other non-public networks endpoints may be in (CIDRs, comma-separated);
    # by default only public addresses are allowed (no server-side request forgery).
    subscription_allowed_networks: str = field(
        default_factory=lambda: os.environ.get("TERMTEM_SUBSCRIPTION_ALLOWED_NETWORKS", "")
    )
    # Seconds one notification request may take.
    subscription_timeout: float = field(
        default_factory=lambda: float(os.environ.get("TERMTEM_SUBSCRIPTION_TIMEOUT") or 10)
    )
    # Notification requests in flight at once across all endpoints (each subscription sends in order).
    subscription_concurrency: int = field(
        default_factory=lambda: _env_int("TERMTEM_SUBSCRIPTION_CONCURRENCY", 32)
    )
    # Seconds between looks at the store for events other server processes recorded (a commit in the
    # delivering process wakes it at once).
    subscription_poll: float = field(
        default_factory=lambda: float(os.environ.get("TERMTEM_SUBSCRIPTION_POLL") or 0.1)
    )
    # Days delivered events stay retrievable with $events.
    subscription_keep_days: int = field(
        default_factory=lambda: _env_int("TERMTEM_SUBSCRIPTION_KEEP_DAYS", 30)
    )
    # How often (seconds) open referrals are checked for passing their due date.
    overdue_sweep_seconds: int = field(default_factory=lambda: _env_int("TERMTEM_OVERDUE_SWEEP", 300))

    def export_path(self) -> Path:
        return self.export_dir if self.export_dir is not None else self.data_dir / "exports"
