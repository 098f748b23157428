"""The serving API's routes, one module-level ``APIRouter`` per area; ``create_app`` includes them.

- :mod:`.ops`: GET /health, GET /metrics, POST /admin/reload
- :mod:`.predict`: POST /predict
- :mod:`.predictions`: GET /predictions/{request_id}, POST /predictions/{request_id}/feedback
- :mod:`.models`: GET /models, GET /metadata

(the asynchronous routes are :data:`coin_assets.serving.async_api.router`). What a route needs (the
store, the model holder, the settings, the caller, ...) comes from :mod:`coin_assets.serving.deps`.
"""
