"""The headless command: generated uploads → every asset → predictions, twice (the second run has nothing to do)."""

import json

import mlflow

from coin_assets import cli
from coin_assets.synth import generate_uploads

TINY = {"image_size": 32, "epochs": 1, "max_steps": 2, "batch_size": 8, "num_workers": 0, "augment": False,
        "backbone": "mobilenet_v3_small", "projection_dim": 16,
        "use_year_reader": False}  # the year reader has its own tests (and the lifecycle test runs it in the chain)
EVAL = json.dumps({"reading_suite_per_placement": 1, "reading_suite_no_year": 1,
                   "reading_suite_photographic_per_placement": 0})


def test_headless_runs_the_whole_chain_on_generated_coins(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COIN_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("COIN_ASSETS_SETTLE_SECONDS", "0")  # the generator just wrote the uploads
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("COIN_ASSETS_DUCKDB", raising=False)
    coins = generate_uploads(tmp_path / "uploads", coins=24, days=2, seed=3, max_side=160)
    try:
        assert cli.main(["headless", "--json", "--train-config", json.dumps(TINY), "--evaluation-config", EVAL]) == 0
        first = json.loads(capsys.readouterr().out)
        assert cli.main(["headless", "--json", "--train-config", json.dumps(TINY), "--evaluation-config", EVAL]) == 0
        second = json.loads(capsys.readouterr().out)
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri("")
    paired = len(coins)
    assert first["tables"]["gold_images"] == 2 * paired and first["tables"]["paired_coins"] == paired
    assert first["tables"]["predictions"] == paired
    assert first["model"]["promoted"] is True and first["checks"]["failed"] == []
    assert (tmp_path / "mlflow" / "artifacts").is_dir() and (tmp_path / "coin_assets.duckdb").is_file()
    # nothing new: no file written, no new model version, the same rows
    assert all(layer["processed"] == 0 for layer in second["layers"].values())
    assert "model" not in second
    assert second["tables"] == first["tables"]
