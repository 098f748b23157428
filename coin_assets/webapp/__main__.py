"""``python -m coin_assets.webapp``: run the Streamlit app on COIN_ASSETS_WEBAPP_PORT (8501)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from streamlit.web import cli as stcli


def main() -> None:
    app = Path(__file__).with_name("app.py")
    port = os.environ.get("COIN_ASSETS_WEBAPP_PORT", "8501")
    sys.argv = ["streamlit", "run", str(app), "--server.port", port, "--server.address",
                os.environ.get("COIN_ASSETS_WEBAPP_HOST", "127.0.0.1"), "--server.headless", "true",
                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                "--client.toolbarMode", "viewer"]
    sys.exit(stcli.main())


if __name__ == "__main__":
    main()
