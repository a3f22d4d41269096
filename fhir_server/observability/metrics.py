"""Prometheus metrics of one app: requests, latency, the store, background jobs and the audit backlog.

Each app gets its own ``CollectorRegistry`` (tests build many apps in one process; the global default
registry would refuse the second). Label values are bounded: interactions come from the URL shape,
operations from the operation table, statuses are HTTP codes.

Background work registers how many jobs it has in each state with ``register_job_source`` (the
``$reindex`` jobs do; a job runner adds its own kinds), read at each scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from fhir_server import FHIR_VERSION, __version__

_REQUEST_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

# kind -> function giving {state: number of jobs}; read at every scrape.
JobSource = Callable[[], dict[str, int]]
_JOB_SOURCES: dict[str, JobSource] = {}


def register_job_source(kind: str, counts: JobSource) -> None:
    """Report the jobs of ``kind`` (e.g. ``reindex``) in ``termtem_background_jobs``."""
    _JOB_SOURCES[kind] = counts


class _Jobs(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "termtem_background_jobs",
            "Background jobs of this process by kind and state",
            labels=["kind", "state"],
        )
        for kind, counts in sorted(_JOB_SOURCES.items()):
            try:
                states = counts()
            except Exception:  # a failing source must not break the scrape
                continue
            for state, number in sorted(states.items()):
                family.add_metric([kind, state], number)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "termtem_http_requests",
            "HTTP requests answered, by FHIR interaction and status",
            ["interaction", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "termtem_http_request_duration_seconds",
            "Time to answer a request, by FHIR interaction and status",
            ["interaction", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "termtem_http_requests_in_flight", "Requests being answered now", registry=self.registry
        )
        self.store_latency = Histogram(
            "termtem_store_operation_duration_seconds",
            "Time spent in store calls (a transaction counts from its start to its commit)",
            ["operation"],
            buckets=_STORE_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "termtem_store_errors", "Store calls that failed", ["operation"], registry=self.registry
        )
        self.audit_backlog = Gauge(
            "termtem_audit_backlog",
            "Responses waiting for their AuditEvent to be stored",
            registry=self.registry,
        )
        self.audit_latency = Histogram(
            "termtem_audit_write_duration_seconds",
            "Time to make a request's AuditEvent durable",
            buckets=_STORE_BUCKETS,
            registry=self.registry,
        )
        Info("termtem_build", "Version of this server", registry=self.registry).info(
            {"version": __version__, "fhir_version": FHIR_VERSION}
        )
        self.registry.register(_Jobs())
        self._by_label: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe_request(self, interaction: str, status: int, seconds: float) -> None:
        children = self._by_label.get((interaction, status))
        if children is None:  # labels() takes a lock and builds a key: once per label pair
            code = str(status)
            children = (self.requests.labels(interaction, code), self.latency.labels(interaction, code))
            self._by_label[(interaction, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type): the Prometheus text format, or OpenMetrics when the scraper asks."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
