"""Prometheus metrics with a registry per service instance (nothing global), and the JSON
summary (``requests``, ``avg_time``, percentiles, error rate)."""

from __future__ import annotations

import collections
import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

#: The Prometheus text exposition content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """The service's metrics, in a :class:`CollectorRegistry` of its own."""

    def __init__(self, window: int = 10_000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "comfykit_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "comfykit_http_request_duration_seconds",
            "Time to answer an HTTP request, by route, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "comfykit_jobs", "Jobs in the store, by state.", ["state"], registry=self.registry
        )
        self.job_duration = Histogram(
            "comfykit_job_duration_seconds",
            "Time from submission to the end of a job, by final state.",
            ["state"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "comfykit_queue_depth", "Jobs waiting (queued).", registry=self.registry
        )
        self.comfyui_up = Gauge(
            "comfykit_comfyui_up",
            "1 when the ComfyUI server answered its last probe.",
            ["server"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "comfykit_webhook_deliveries_total",
            "Webhook delivery attempts, by outcome: delivered (2xx), retry (failed, tried "
            "again later), failed (the last attempt failed).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("delivered", "retry", "failed"):
            self.webhook_deliveries.labels(outcome)  # exported at 0 from the start
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._durations: collections.deque[float] = collections.deque(maxlen=window)
        self._count = 0
        self._errors = 0
        self._total_time = 0.0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        labels = (route, method, str(status))
        children = self._children.get(labels)
        if children is None:  # one lookup per label set, not two per request
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)
        self._durations.append(seconds)
        self._count += 1
        self._total_time += seconds
        if status >= 500:
            self._errors += 1

    def set_job_counts(self, counts: dict[str, int]) -> None:
        """Set the jobs-by-state gauges and the queue depth."""
        for state in ("queued", "processing", "completed", "failed", "cancelled"):
            self.jobs.labels(state).set(counts.get(state, 0))
        self.queue_depth.set(counts.get("queued", 0))

    def text(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """``requests``, ``avg_time`` and ``p50``/``p95``/``p99`` in seconds, ``error_rate``."""
        ordered = sorted(self._durations)

        def pct(p: float) -> float:
            if not ordered:
                return 0.0
            k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
            return ordered[k]

        return {
            "requests": self._count,
            "avg_time": self._total_time / self._count if self._count else 0.0,
            "p50": pct(50),
            "p95": pct(95),
            "p99": pct(99),
            "error_rate": self._errors / self._count if self._count else 0.0,
        }
