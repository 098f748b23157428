"""``python -m coin_assets.serving [--workers N]``: the API on uvicorn at COIN_ASSETS_API_HOST:COIN_ASSETS_API_PORT.

With several workers, /metrics sums all of them (prometheus_client multiprocess mode): the metrics
folder is ``PROMETHEUS_MULTIPROC_DIR`` when set (emptied at start), else a new temporary folder,
removed when the service stops.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile

import uvicorn

from coin_assets.settings import API_WORKERS_ENV, Settings

APP_FACTORY = "coin_assets.serving.app:create_app"


# uvicorn's supervisor kills a worker whose ping thread has not answered in this time (default 5 s). A worker
# reading several photos at once on a busy machine can starve that thread for longer; killing it then drops
# every request it holds, which is worse than waiting.
WORKER_HEALTHCHECK_SECONDS = 60


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m coin_assets.serving", description=__doc__)
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (each loads the model)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from coin_assets.serving.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    given = os.environ.get(MULTIPROC_ENV)
    if given:  # before any metric exists: values of an earlier start must not be counted
        prepare_multiprocess_dir(given)
    if args.workers <= 1:
        from coin_assets.serving.app import create_app

        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                    timeout_graceful_shutdown=10)
        return

    # set before the workers start: prometheus_client picks its multiprocess mode when it is imported
    folder = given or tempfile.mkdtemp(prefix="coin_serving_metrics_")
    os.environ[MULTIPROC_ENV] = str(folder)
    os.environ[API_WORKERS_ENV] = str(args.workers)  # each worker reads it back through Settings
    try:
        uvicorn.run(APP_FACTORY, factory=True, workers=args.workers, host=args.host, port=args.port,
                    log_level=args.log_level, timeout_graceful_shutdown=10,
                    timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS)
    finally:
        if not given:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
