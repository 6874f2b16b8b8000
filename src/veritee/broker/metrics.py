"""Prometheus metrics of one broker process (a registry per app, never the global one).

Names follow Trustee's KBS (``kbs/docs/metrics.md``) with the ``veritee_`` prefix.
With several worker processes, each exposes its own counters at ``/metrics``; scrape every
worker or run one process per container.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from veritee import __version__

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        Gauge("veritee_build_info", "Build information", ["version"], registry=r).labels(
            __version__).set(1)
        self.requests = Counter("veritee_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("veritee_http_request_duration_seconds", "HTTP request latency",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.attestations = Counter("veritee_attestations_total",
                                    "Attestations by TEE and outcome", ["tee", "outcome"],
                                    registry=r)
        self.verify_latency = Histogram("veritee_attestation_duration_seconds",
                                        "Verification and appraisal time", ["tee"],
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("veritee_policy_decisions_total", "Policy decisions",
                                 ["kind", "outcome"], registry=r)

    def watch_audit(self, pending: Callable[[], float], dropped: Callable[[], float]) -> None:
        """Export the audit writer's backlog and losses (veritee.store.audit)."""
        Gauge("veritee_audit_events_pending", "Audit events not written to the store yet",
              registry=self.registry).set_function(pending)
        Gauge("veritee_audit_events_dropped", "Audit events dropped since the start because "
              "the store could not take them", registry=self.registry).set_function(dropped)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def attestation(self, tee: str, outcome: str, seconds: float) -> None:
        self.attestations.labels(tee, outcome).inc()
        if seconds:
            self.verify_latency.labels(tee).observe(seconds)

    def policy(self, kind: str, outcome: str) -> None:
        self.decisions.labels(kind, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
