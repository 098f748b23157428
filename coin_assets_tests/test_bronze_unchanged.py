"""Bronze does not hash an upload again when its key, size and mtime are unchanged."""

import os

import duckdb
import pytest
from PIL import Image

from coin_assets.core import ingest
from coin_assets.core.storage import LocalStore

DAY = "2026-11-19"


@pytest.fixture()
def lake(tmp_path):
    folder = tmp_path / "uploads" / DAY
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 30), (1, 2, 3)).save(folder / "c1__front.png")
    Image.new("RGB", (40, 30), (3, 2, 1)).save(folder / "c1__back.png")
    (folder / "notes.txt").write_text("not a photo")
    conn = duckdb.connect(str(tmp_path / "meta.duckdb"))
    yield LocalStore(tmp_path), conn, folder
    conn.close()


def test_unchanged_uploads_are_not_hashed_again(lake, monkeypatch):
    store, conn, _ = lake
    first = ingest.ingest_bronze(store, conn, DAY)
    assert first.processed == 3

    def no_hashing(*args, **kwargs):
        raise AssertionError("an unchanged upload was read and hashed again")

    monkeypatch.setattr(ingest, "stage_copy", no_hashing)
    second = ingest.ingest_bronze(store, conn, DAY)
    assert (second.processed, second.skipped, second.quarantined) == (0, 3, 1)
    assert conn.execute("SELECT count(*) FROM quarantine WHERE stage = 'bronze'").fetchall() == [(1,)]


def test_a_touched_upload_is_hashed_again(lake):
    store, conn, folder = lake
    ingest.ingest_bronze(store, conn, DAY)
    stat = (folder / "c1__front.png").stat()
    os.utime(folder / "c1__front.png", (stat.st_atime, stat.st_mtime + 5))
    Image.new("RGB", (40, 30), (9, 9, 9)).save(folder / "c1__back.png")
    report = ingest.ingest_bronze(store, conn, DAY)
    assert report.skipped == 2  # notes.txt untouched; the touched front hashes to the bronze file it has
    assert report.processed == 1  # the rewritten back has new bytes
