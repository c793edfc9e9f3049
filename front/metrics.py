"""The front's Prometheus metrics, in a registry of its own (not the process-global one).

- ``triton_pack_api_requests_total{route, model, status}``: every answered request;
- ``triton_pack_api_errors_total{route, model, type}``: those with status >= 400, by the
  error's type (OpenAI's ``type`` names);
- ``triton_pack_api_request_duration_seconds{route, model}``: latency to the response's
  start (for a stream: to its headers; the stream's length is the model's business);
- ``triton_pack_api_generation_cancelled_total{model}``: streams whose client went away,
  whose generation the front cancelled on Triton.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "FrontMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


class FrontMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "triton_pack_api_requests",
            "Requests answered, by route, model and HTTP status.",
            ("route", "model", "status"),
            registry=self.registry,
        )
        self.errors = Counter(
            "triton_pack_api_errors",
            "Requests answered with an error, by route, model and error type.",
            ("route", "model", "type"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "triton_pack_api_request_duration_seconds",
            "Seconds from a request's arrival to its response's start, by route and model.",
            ("route", "model"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.cancelled = Counter(
            "triton_pack_api_generation_cancelled",
            "Streamed generations cancelled on Triton because the client went away.",
            ("model",),
            registry=self.registry,
        )

    def observe(self, route: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(route, model, str(status)).inc()
        self.latency.labels(route, model).observe(seconds)
        if status >= 400:
            self.errors.labels(route, model, _error_type(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
