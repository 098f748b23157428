"""Real-time serving: the FastAPI app (app.py), the production model it follows (model_holder.py), the
micro-batcher (batching.py), input rules (inputs.py), the request store (store.py), request logging into
the upload zone (request_log.py), feedback auth (auth.py), Prometheus metrics (metrics.py) and the
reload client that promotion and rollback call (client.py)."""
