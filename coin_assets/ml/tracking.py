"""MLflow bookkeeping of the synthetic pre-training, in one function (no Dagster here).

The pre-trained weights are stored by the caller (object store key) and recorded here as the run's
``weights_key`` tag; the fine-tuning run of ``coin_year_model`` tags ``pretrained_run_id`` with this
run's id, so the lineage between the two runs is in MLflow.
"""

from __future__ import annotations

import io
from dataclasses import asdict

PRETRAINED_POINTER = "ml/pretrained/latest.json"


def state_bytes(model) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def log_pretraining(result, config, weights_key: str, weights_uri: str, dagster_run_id: str | None = None,
                    run_name: str = "synthetic_pretraining") -> str:
    """One MLflow run for a PretrainResult: params (the config), per-epoch metrics, the calibrated
    validation figures, the learning-curve figure, the weights' URI (weights_uri.txt) and tags. Returns the
    run id. The tracking URI and experiment are the caller's (already set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({f"pretrain.{k}": v for k, v in asdict(config).items()})
        for row in result.history:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k not in ("epoch", "steps")},
                               step=int(row["epoch"]))
        mlflow.log_metrics({f"val_{k}": float(v) for k, v in result.val_metrics.items()})
        mlflow.log_metrics({"train_seconds": result.seconds, "corpus_seconds": result.corpus_seconds,
                            "train_pairs_per_second": result.pairs_per_second, "steps": result.steps,
                            "interval_scale": result.interval_scale})
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.plot([h["epoch"] for h in result.history], [h["val_mae"] for h in result.history], marker="o",
                label="val MAE")
        ax.set_xlabel("epoch")
        ax.set_ylabel("years")
        ax.legend()
        mlflow.log_figure(fig, "pretraining_curve.png")
        plt.close(fig)
        mlflow.log_text(weights_uri, "weights_uri.txt")
        mlflow.set_tags({"kind": "synthetic_pretraining", "weights_key": weights_key,
                         "dagster_run_id": dagster_run_id or ""})
        return run.info.run_id
