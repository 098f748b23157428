"""Debian's chromium driven by Playwright, for the browser tests, and the screenshots they take.

A screenshot goes to ``$COIN_ASSETS_SCREENSHOTS`` when it is set (the README's pictures are made with
``COIN_ASSETS_SCREENSHOTS=docs/images pytest coin_assets_tests/test_webapp_browser.py
coin_assets_tests/test_demo_backfill.py``), else to the test's own temporary folder."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from playwright import sync_api as playwright_sync

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium():
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: `make browser` (part of `make test`) installs it"
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name: str, fallback: Path) -> Path:
    """A full-page PNG of ``page`` named ``name``; returns where it went."""
    folder = Path(os.environ.get("COIN_ASSETS_SCREENSHOTS") or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path}: an empty screenshot"
    return path
