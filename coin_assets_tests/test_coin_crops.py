"""The gold coin crops asset: real ingestion, real DuckDB, real Dagster; found and not-found images."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from dagster import materialize

from coin_assets.core import parallel
from coin_assets.synth import varied

from .conftest import ASSETS, DAY, INGESTION_ASSETS, materialization_metadata

coin_crops = ASSETS["coin_crops"]


@pytest.mark.parametrize("where", ["in_process", "process_pool"])
def test_coin_crops_records_centre_radius_or_the_reason_and_skips_unchanged(lake, monkeypatch, where):
    if where == "process_pool":  # a real forkserver pool even for these four images
        monkeypatch.setattr(parallel, "POOL_MIN_ITEMS", 1)
    style = replace(varied.sample_style(random.Random(1)), squash=1.0, background="paper")
    front, back = varied.render_photo_pair(1984, style, random.Random(1), (480, 360))
    lake.upload(DAY, "coin", "front", "jpg", image=front.image)
    lake.upload(DAY, "coin", "back", "jpg", image=back.image)
    lake.sidecar(DAY, "coin", year=1984)
    lake.coin(DAY, "blank", year=1990)  # flat colour photos: no coin in them

    def run(selection=None):
        return materialize([*INGESTION_ASSETS, coin_crops], partition_key=DAY, resources=lake.resources,
                           instance=lake.instance, selection=selection)

    meta = materialization_metadata(run(), "coin_crops")
    assert meta["found"] == 2 and meta["not_found"] == 2
    rows = {(r["coin_id"], r["side"]): r for r in lake.df("SELECT * FROM coin_crops").to_dict("records")}
    f = rows[("coin", "front")]
    scale = 480 / 480  # gold keeps photos up to 512 px as they are
    assert abs(f["centre_x"] - front.centre[0] * scale) <= max(4, 0.05 * front.radius)
    assert abs(f["radius"] - front.radius * scale) <= 0.12 * front.radius  # the shadow can join the outline
    assert lake.store.exists(f["crop_path"])
    blank = rows[("blank", "front")]
    assert not blank["found"] and blank["reason"] and blank["crop_path"] is None

    # (run whole again, the chain would be skipped: nothing changed)
    again = materialization_metadata(run(["coin_crops"]), "coin_crops")
    assert again["processed"] == 0 and again["skipped_unchanged"] == 4
    assert lake.scalar("SELECT count(*) FROM coin_crops") == 4


def test_an_unreadable_coin_and_a_photo_without_a_coin_go_to_the_review_queue(lake):
    import numpy as np
    import pandas as pd
    import torch

    from coin_assets.core import predictions as preds
    from coin_assets.core.clock import utcnow
    from coin_assets.ml.model import UNREADABLE_SIGMA, CoinYearRegressor
    from coin_assets.ml.pretrain import to_input

    style = replace(varied.sample_style(random.Random(4)), squash=1.0, background="paper")
    front, back = varied.render_photo_pair(1990, style, random.Random(4), (480, 360))
    lake.upload(DAY, "coin", "front", "jpg", image=front.image)
    lake.upload(DAY, "coin", "back", "jpg", image=back.image)
    lake.sidecar(DAY, "coin")
    lake.coin(DAY, "blank", year=None)
    materialize([*INGESTION_ASSETS, coin_crops], partition_key=DAY, resources=lake.resources, instance=lake.instance)

    torch.manual_seed(0)
    model = CoinYearRegressor("mobilenet_v3_small", projection_dim=8).eval()  # untrained: cannot read anything
    with torch.no_grad():
        read = model.read(to_input(np.zeros((2, 2, 32, 32, 3), np.uint8)))
    assert read["unreadable"].all() and (read["sigma"] >= UNREADABLE_SIGMA).all()
    year, sigma = read["year"].numpy().astype(float), read["sigma"].numpy().astype(float)
    frame = pd.DataFrame({"coin_id": ["blank", "coin"], "partition_date": DAY, "predicted_year": year, "sigma": sigma,
                          "lower_90": year - 1.645 * sigma, "upper_90": year + 1.645 * sigma, "model_name": "m",
                          "model_version": "1", "predicted_at": utcnow(), "dagster_run_id": "r"})
    with lake.resources["duckdb"].get_connection() as conn:
        preds.insert_predictions(conn, frame)
        queue = preds.refresh_review_queue(conn, DAY, "1", max_interval_years=20, label_tolerance_years=2)
    reasons = dict(zip(queue["coin_id"], queue["reason"], strict=True))
    assert set(reasons) == {"blank", "coin"}
    assert "years wide" in reasons["coin"]
    assert "no coin found (back: " in reasons["blank"] and "front: " in reasons["blank"]


@pytest.mark.servers
def test_the_coin_search_holds_no_connection_so_another_process_can_read_the_file(lake, monkeypatch):
    """coin_crops' circle search takes seconds per day; it used to run inside a read-write connection,
    so a check or a notebook in another process could not open the file meanwhile."""
    import subprocess
    import sys

    from coin_assets.core import crops

    lake.coin(DAY, "blank", year=1990)
    lake.materialize(DAY)
    opened_during_search = []
    search = crops._find_and_crop

    def find_while_another_process_reads(*args):
        probe = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
                 "print(c.execute('SELECT count(*) FROM gold_images').fetchall()[0][0])")
        done = subprocess.run([sys.executable, "-c", probe, str(lake.db_path)], capture_output=True, text=True)
        opened_during_search.append((done.returncode, done.stdout.strip()))
        return search(*args)

    monkeypatch.setattr(crops, "_find_and_crop", find_while_another_process_reads)
    materialize([*INGESTION_ASSETS, coin_crops], partition_key=DAY, resources=lake.resources,
                instance=lake.instance, selection=["coin_crops"])
    assert opened_during_search and all(found == (0, "2") for found in opened_during_search)
