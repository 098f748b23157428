"""The web app in a real headless Chromium (Debian's ``chromium``, driven by Playwright's Python API).

Everything is started for real: the serving API (uvicorn, ``python -m coin_assets.serving``) on a
tiny registered model in a temporary MLflow registry, and the Streamlit app
(``python -m coin_assets.webapp``), which only talks to the API over HTTP. The browser sends a
generated pair and sees a year, sends a text file named ``.jpg`` and sees the error, finds the
request in the history, submits a correction whose verdict is then found in the store, and sends a
zip of two coins on the batch page (scored by the worker) until its CSV can be downloaded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import psutil
import pytest
from playwright import sync_api as playwright_sync
from sqlalchemy import select

from coin_assets.serving.store import RequestStore, feedback
from coin_assets_tests.browser import chromium, screenshot
from coin_assets_tests.serving_fixtures import REVIEWER_TOKEN, Registry, coin_photos, legible_coin_photos

ROOT = Path(__file__).resolve().parent.parent

playwright_sync.expect.set_options(timeout=60_000)  # a contended 2-core machine: reruns can take seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: process exited {proc.returncode}\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout} s\n{log.read_text()[-3000:]}")


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """The API, one worker and the web app, started by the one-command launcher (without dagster dev)
    in a process group of its own; on teardown SIGTERM must stop the whole group within seconds."""
    base = tmp_path_factory.mktemp("webapp")
    registry = Registry(base / "mlflow")
    registry.promote(registry.register(seed=0, reader=True))
    settings = registry.settings(base / "data")
    api_port, web_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COIN_ASSETS_DATA_DIR": settings.data_dir,
           "MLFLOW_TRACKING_URI": settings.tracking_uri, "COIN_ASSETS_MODEL_NAME": settings.model_name,
           "COIN_ASSETS_API_TOKENS": settings.api_tokens, "COIN_ASSETS_SERVING_POLL_SECONDS": "0",
           "COIN_ASSETS_API_PORT": str(api_port), "COIN_ASSETS_WEBAPP_PORT": str(web_port)}
    log = base / "launcher.log"
    launcher = start([sys.executable, "-m", "coin_assets.devtools.launcher", "--no-dagster"], env, log)
    try:
        wait_http(f"http://127.0.0.1:{api_port}/health", launcher, log)
        wait_http(f"http://127.0.0.1:{web_port}/_stcore/health", launcher, log)
        front, back = legible_coin_photos(year=1961, seed=3)
        (base / "front.jpg").write_bytes(front)
        (base / "back.jpg").write_bytes(back)
        (base / "notes.jpg").write_bytes(b"this is a text file, not a photo\n")
        with zipfile.ZipFile(base / "coins.zip", "w") as archive:
            for coin, year in (("k1", 1921), ("k2", 1999)):
                for side, photo in zip(("front", "back"), coin_photos(year=year, seed=year, size=(200, 150)),
                                       strict=True):
                    archive.writestr(f"{coin}__{side}.jpg", photo)
        yield {"base": base, "settings": settings, "web": f"http://127.0.0.1:{web_port}"}
    finally:
        # how fast it stops is the launcher's grace (measured, not asserted); here: it stops by itself
        began = time.monotonic()
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(60)
        finally:
            while group_alive(launcher.pid) and time.monotonic() - began < 60:
                time.sleep(0.1)
            stopped_by_itself = not group_alive(launcher.pid)
            if not stopped_by_itself:
                os.killpg(launcher.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"http://127.0.0.1:{web_port}" in text and "worker-1" in text
    assert launcher.returncode == 0 and "platform stopped" in text
    assert stopped_by_itself, "the platform's processes outlived SIGTERM"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def open_app(browser, url: str):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    if os.environ.get("H9_DEBUG"):
        page.on("console", lambda m: print("console:", m.text))
        page.on("requestfailed", lambda r: print("failed:", r.url, r.failure))
        page.on("response", lambda r: print("resp:", r.status, r.request.method, r.url) if "upload" in r.url else None)
    page.goto(url)
    # the whole script has run once (sidebar health, then the page down to its button)
    page.get_by_text("Serving coin_serving_test").wait_for()
    page.get_by_role("button", name="Date this coin").wait_for()
    return page


def page_with_pair(browser, url: str, front: Path, back: Path):
    """A fresh page of the app with ``front`` and ``back`` in its two uploaders. On a busy machine
    the frontend can drop a file set while it re-renders: each file is set again once the script is
    idle (3 tries a page), then the page is opened again (3 pages)."""
    for attempt in range(3):
        page = open_app(browser, url)
        try:
            for i, path in enumerate((front, back)):
                uploader = page.get_by_test_id("stFileUploader").nth(i)
                set_file(page, uploader, path)
            playwright_sync.expect(page.get_by_role("button", name="Date this coin")).to_be_enabled()
            return page
        except AssertionError:
            page.close()
            if attempt == 2:
                raise


def set_file(page, uploader, path: Path) -> None:
    for attempt in range(3):
        # a rerun in flight replaces the uploader's input and loses what was set on the old one
        page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)
        uploader.locator("input[type=file]").set_input_files(str(path))
        try:
            playwright_sync.expect(uploader).to_contain_text(path.name, timeout=20_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def test_date_a_coin_history_and_correction(platform, browser):
    expect = playwright_sync.expect
    base = platform["base"]
    # A text file named .jpg: a clear error, no answer.
    page = page_with_pair(browser, platform["web"], base / "notes.jpg", base / "back.jpg")
    expect(page.get_by_text("Serving coin_serving_test v1")).to_be_visible()
    page.get_by_role("button", name="Date this coin").click()
    expect(page.get_by_text("This upload cannot be used")).to_be_visible()
    expect(page.get_by_text("not a recognised image")).to_be_visible()
    expect(page.get_by_text("Minted in")).to_have_count(0)
    page.close()

    # A generated pair: a year, its interval, the model version and the crops the model saw.
    page = page_with_pair(browser, platform["web"], base / "front.jpg", base / "back.jpg")
    page.get_by_role("button", name="Date this coin").click()
    expect(page.get_by_text("Minted in")).to_be_visible()
    expect(page.get_by_text("90 % interval:")).to_be_visible()
    expect(page.get_by_text("v1", exact=False).first).to_be_visible()
    expect(page.get_by_text("front as the model saw it")).to_be_visible()
    # where the year was read, drawn on the photo, and the digits with their probabilities
    expect(page.get_by_text("where the year was read")).to_be_visible()
    expect(page.get_by_text("Digits read:").locator("..")).to_contain_text("1961")
    expect(page.get_by_text("Minted in")).to_be_visible()
    assert "1961" in page.get_by_test_id("stMetricValue").first.inner_text()
    screenshot(page, "webapp_date_a_coin.png", base)
    request_id = page.get_by_text("request ", exact=False).last.inner_text().split()[-1]
    assert len(request_id) == 36

    # A correction needs an identified caller; from a reviewer it is a verdict that becomes a label.
    page.get_by_role("button", name="Send correction").click()
    expect(page.get_by_text("Corrections need an identified caller")).to_be_visible()
    token = page.get_by_role("textbox", name="Feedback token")
    token.fill(REVIEWER_TOKEN)
    token.press("Enter")
    page.get_by_role("spinbutton", name="True year").fill("1955")
    page.get_by_role("button", name="Send correction").click()
    expect(page.get_by_text("This coin will be used in the next training")).to_be_visible()
    store = RequestStore(platform["settings"].serving_db)
    with store.engine.connect() as conn:
        rows = conn.execute(select(feedback).where(feedback.c.request_id == request_id)).mappings().all()
    store.dispose()
    assert [(r["year"], r["sender"], r["role"], r["status"]) for r in rows] == [(1955, "rita", "reviewer",
                                                                                 "label_submitted")]
    assert (Path(platform["settings"].data_dir) / rows[0]["review_key"]).exists()

    # History: the request is there, completed, with its year.
    page.goto(platform["web"] + "/history")
    expect(page.get_by_text(request_id)).to_be_visible()
    row = page.locator("tr", has_text=request_id)
    expect(row).to_contain_text("completed")

    # Many coins: a zip → a batch scored by the worker, a progress bar, then a CSV to download.
    page.goto(platform["web"] + "/batch")
    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files(str(base / "coins.zip"))
    expect(uploader).to_contain_text("coins.zip")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("2 / 2 coins done")).to_be_visible()
    expect(page.get_by_role("button", name="Download CSV")).to_be_visible()


@pytest.mark.parametrize("status, body, headers, expected", [
    (503, {"status": "not_ready", "reason": "no 'production' version yet"}, {}, "No model is in production yet"),
    (503, {"error": "not_ready", "detail": "no model loaded"}, {"Retry-After": "1"}, "No model is in production yet"),
    (503, {"error": "overloaded", "detail": "queue full"}, {"Retry-After": "2"}, "busy. Please retry in 2 s"),
    (413, {"error": "too_large", "detail": "front: photo over the size limit"}, {}, "This photo is too large"),
    (422, {"error": "bad_image", "detail": "front: not a recognised image"}, {}, "This upload cannot be used"),
    (401, {"error": "unauthorized", "detail": "feedback needs a token"}, {}, "Corrections need an identified caller"),
])
def test_every_api_error_becomes_a_sentence(status, body, headers, expected):
    from coin_assets.webapp.client import error_for

    err = error_for(httpx.Response(status, json=body, headers=headers))
    assert err.status == status and expected in err.message


def test_an_unreachable_api_is_said_so():
    from coin_assets.webapp.client import ApiClient, ApiError

    with pytest.raises(ApiError, match="cannot be reached") as info:
        ApiClient(f"http://127.0.0.1:{free_port()}", timeout=2).health()
    assert info.value.status == 0


def test_launcher_kills_what_ignores_sigterm_and_passes_on_an_exit_code(tmp_path):
    """The generic form (``-- CMD -- CMD``): a child that ignores SIGTERM is killed after the grace,
    and a command that exits stops the others with its exit status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stubborn = subprocess.Popen([sys.executable, "-m", "coin_assets.devtools.launcher", "--grace", "1",
                                 "--", "sleep", "60", "--", "bash", "-c", "trap '' TERM; sleep 60 & wait"], env=env,
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60  # both children started
    while len(psutil.Process(stubborn.pid).children(recursive=True)) < 3:
        assert time.monotonic() < deadline, "the launcher did not start its two commands"
        time.sleep(0.05)
    stubborn.send_signal(signal.SIGTERM)
    assert stubborn.wait(60) == 0
    assert not group_alive(stubborn.pid)
    assert b"killed" in stubborn.stdout.read()
    failing = subprocess.run([sys.executable, "-m", "coin_assets.devtools.launcher", "--", "bash", "-c", "exit 3",
                              "--", "sleep", "60"], env=env, capture_output=True, text=True, timeout=30,
                             start_new_session=True)  # its own group: the launcher stops every process of it
    assert failing.returncode == 3 and "exited with code 3" in failing.stdout
