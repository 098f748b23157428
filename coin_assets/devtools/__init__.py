"""Development tools: the one-machine demo and the local scale-out stack. Not part of the platform's
runtime; nothing outside this package (but the tests, benchmarks and deploy scripts) imports it.

- ``launcher``: ``make demo``, dagster dev, the API, the worker(s) and the web app in one process group
  (``python -m coin_assets.devtools.launcher``), or any commands (``-- CMD -- CMD``) the same way.
- ``local_cluster``: every scale-out server (Postgres, Redis, moto S3, MLflow, the Dagster webserver
  and daemon, Celery workers) as local processes (``make cluster``, the scale-out tests and benchmarks).
- ``supervisor``: what both share: starting a child (its output in a log file, in its own session or in
  ours), stopping a process group (SIGTERM, SIGKILL after a grace), checking a port, waiting for a check.
"""
