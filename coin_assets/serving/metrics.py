"""Prometheus metrics of the API (prometheus_client), one registry per app so that apps never clash."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("coin_serving_requests", "Prediction requests by outcome", ["outcome"], registry=r)
        self.latency = Histogram("coin_serving_request_latency_seconds", "Server-side latency of /predict",
                                 buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=r)
        self.batch_size = Histogram("coin_serving_batch_size", "Coins per forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue_depth = Gauge("coin_serving_queue_depth", "Requests waiting for a forward pass", registry=r)
        self.in_flight = Gauge("coin_serving_in_flight", "Prediction requests being handled", registry=r)
        self.served = Gauge("coin_serving_model_version", "1 for the model version being served",
                            ["model_name", "version"], registry=r)
        self.reloads = Counter("coin_serving_reloads", "Model reload attempts by outcome", ["outcome"], registry=r)
        self.load_failed = Gauge("coin_serving_model_load_failed",
                                 "1 while the latest production version could not be loaded", registry=r)
        self.feedback = Counter("coin_serving_feedback", "Feedback received by role", ["role"], registry=r)
        self.async_requests = Gauge("coin_async_requests", "Asynchronous requests in the store by status",
                                    ["status"], registry=r)

    def set_served(self, name: str, version: str) -> None:
        self.served.clear()
        self.served.labels(model_name=name, version=version).set(1)
