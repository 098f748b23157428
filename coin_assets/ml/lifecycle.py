"""Glue between gold rows, the training loop and registered models (no Dagster here).

torch is imported inside the functions that need it, so that loading the Dagster definitions (and
every ingestion step) does not pay for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd

from coin_assets.ml.config import TrainConfig


def coin_records(frame: pd.DataFrame, split: str | None = None, use_crops: bool = True) -> list:
    """CoinRecords for a split of a training-set frame, or for all rows: the coin-centred crops where both
    sides have one (and ``use_crops``), the whole gold photos otherwise."""
    from coin_assets.ml.data import CoinRecord

    rows = frame if split is None else frame[frame["split"] == split]
    years = rows["label_year"] if "label_year" in rows else [None] * len(rows)
    fronts, backs = list(rows["front_path"]), list(rows["back_path"])
    if use_crops and "front_crop_path" in rows and "back_crop_path" in rows:
        for i, (fc, bc) in enumerate(zip(rows["front_crop_path"], rows["back_crop_path"], strict=True)):
            if isinstance(fc, str) and isinstance(bc, str):
                fronts[i], backs[i] = fc, bc
    return [
        CoinRecord(coin_id=c, front_path=f, back_path=b, year=None if y is None or pd.isna(y) else float(y))
        for c, f, b, y in zip(rows["coin_id"], fronts, backs, years, strict=True)
    ]


def config_hash(config: TrainConfig) -> str:
    """What would make a retrain on the same data a different model."""
    fields = {k: v for k, v in asdict(config).items() if k not in ("device", "num_workers", "num_threads")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_example(image_size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A float32 [B, 2, 3, S, S] array shaped like the model input (normalised pixel values)."""
    return np.random.default_rng(seed).standard_normal((batch, 2, 3, image_size, image_size)).astype(np.float32)


def example_from_records(records: list, image_size: int, read_bytes: Callable[[str], bytes]) -> np.ndarray:
    """A real input example: the first coin, decoded exactly as training decodes it."""
    from coin_assets.ml.data import CoinPairDataset

    pair, _ = CoinPairDataset(records[:1], image_size=image_size, read_bytes=read_bytes)[0]
    return pair.unsqueeze(0).numpy().astype(np.float32)


def score(model, records: list, image_size: int, read_bytes, device: str = "auto", num_workers: int = 0) -> dict:
    """Metrics of a model on labelled records, plus the raw predictions."""
    from coin_assets.ml.train import predict, regression_metrics

    years, sigmas = predict(model, records, image_size=image_size, device=device, read_bytes=read_bytes,
                            num_workers=num_workers)
    truth = np.array([r.year for r in records], dtype=float)
    metrics = regression_metrics(truth, years, sigmas)
    return {"metrics": metrics, "years": years, "sigmas": sigmas}


def mean_baseline_mae(train_years, test_years) -> float:
    """MAE of always predicting the training mean: the bar a model must clear."""
    return float(np.mean(np.abs(np.asarray(test_years, float) - float(np.mean(train_years)))))
