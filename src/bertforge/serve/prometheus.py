"""The server's Prometheus metrics, in a registry of its own (one per app: two apps in one process, as in tests,
do not share counts). `GET /metrics` renders them in Prometheus' text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Forward-pass sizes: powers of two up to the most a default --max-batch-tokens batch can hold.
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """What a load test and an operator watch: requests and their latency, the queue, batch sizes, tokens."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bertforge_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "bertforge_request_duration_seconds",
            "time from a request's arrival to its response, by route",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.in_flight = Gauge("bertforge_requests_in_flight", "/predict requests queued or running", registry=r)
        self.receiving = Gauge(
            "bertforge_requests_receiving",
            "/predict requests whose body is still arriving (they hold no slot)",
            registry=r,
        )
        self.queue_size = Gauge(
            "bertforge_queue_size", "model inputs (features) waiting for a forward pass", registry=r
        )
        self.batch_size = Histogram(
            "bertforge_batch_size", "model inputs (features) per forward pass", buckets=_SIZES, registry=r
        )
        self.batch_requests = Histogram(
            "bertforge_batch_requests", "requests sharing a forward pass", buckets=_SIZES, registry=r
        )
        self.tokens = Counter("bertforge_tokens", "tokens run through the model, padding left out", registry=r)
        self.inference = Histogram(
            "bertforge_forward_seconds",
            "time of one forward pass",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
