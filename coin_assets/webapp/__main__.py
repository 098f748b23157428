"""``python -m coin_assets.webapp``: run the Streamlit app on COIN_ASSETS_WEBAPP_HOST:COIN_ASSETS_WEBAPP_PORT
(127.0.0.1:8501)."""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.web import cli as stcli

from coin_assets.settings import Settings


def main() -> None:
    app = Path(__file__).with_name("app.py")
    settings = Settings.from_env()
    sys.argv = ["streamlit", "run", str(app), "--server.port", str(settings.webapp_port), "--server.address",
                settings.webapp_host, "--server.headless", "true",
                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                "--client.toolbarMode", "viewer"]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
