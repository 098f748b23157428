"""The admission gate of POST /predict (ASGI middleware) and the Retry-After it and the route answer."""

from __future__ import annotations

from coin_assets.serving.errors import error
from coin_assets.serving.metrics import ServingMetrics

RETRY_AFTER_SECONDS = 1


class BodyTooLarge(Exception):
    pass


class PredictGate:
    """ASGI middleware for POST /predict: at most ``max_in_flight`` requests held (more → 503 with
    Retry-After, before any body is read), and the body refused while streaming once over the limit."""

    def __init__(self, app, max_in_flight: int, max_body: int, metrics: ServingMetrics):
        self.app, self.max_in_flight, self.max_body, self.metrics = app, max_in_flight, max_body, metrics
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            self.metrics.requests.labels(outcome="too_large").inc()
            return await error(413, "too_large", f"request body over {self.max_body} bytes")(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            self.metrics.requests.labels(outcome="overloaded").inc()
            return await error(503, "overloaded", "too many requests in flight; retry shortly",
                               {"Retry-After": str(RETRY_AFTER_SECONDS)})(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            self.metrics.requests.labels(outcome="too_large").inc()
            if not started:
                await error(413, "too_large", f"request body over {self.max_body} bytes")(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
