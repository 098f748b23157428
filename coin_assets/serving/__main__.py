"""``python -m coin_assets.serving``: the API on uvicorn at COIN_ASSETS_API_HOST:COIN_ASSETS_API_PORT."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from coin_assets.serving.app import create_app
from coin_assets.settings import Settings


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m coin_assets.serving", description=__doc__)
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
