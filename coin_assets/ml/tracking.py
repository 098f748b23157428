"""MLflow bookkeeping, one function per training kind (no Dagster here): :func:`train_and_register` for
the model trained on people's coins, :func:`log_pretraining` for the synthetic pre-training.

The pre-trained weights are stored by the caller (object store key) and recorded here as the run's
``weights_key`` tag; the fine-tuning run of ``coin_year_model`` tags ``pretrained_run_id`` with this
run's id, so the lineage between the two runs is in MLflow.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

from coin_assets.core.clock import utcnow

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
                            "interval_scale": result.interval_scale,
                            "min_confidence": getattr(result, "min_confidence", math.nan)})
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


def log_reader_pretraining(result, config: dict, weights_uri: str, dagster_run_id: str | None = None,
                           kind: str = "year_reader_pretraining") -> str:
    """One MLflow run for a recogniser training (``kind``: the platform's recogniser, or the fine-tuned line
    reader): config, per-checkpoint curve, validation figures, weights."""
    import mlflow

    with mlflow.start_run(run_name=kind) as run:
        mlflow.log_params({f"reader.{k}": v for k, v in config.items()})
        for row in result.history:
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "step"}, step=int(row["step"]))
        mlflow.log_metrics({f"val_{k}": float(v) for k, v in result.val_metrics.items()})
        if getattr(result, "base_metrics", None):  # the line reader: the wheel's figures on the same lines
            mlflow.log_metrics({f"wheel_val_{k}": float(v) for k, v in result.base_metrics.items()})
        mlflow.set_tags({"kind": kind, "weights_uri": weights_uri,
                         "corpus_hash": result.corpus_hash, "dagster_run_id": dagster_run_id or ""})
        return run.info.run_id


@dataclass
class RegisteredTraining:
    version: str
    run_id: str
    result: object  # TrainResult
    curve: object  # matplotlib figure
    interval_scale: float | None


def learning_curve(history: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    epochs = [h["epoch"] for h in history]
    for key in ("train_mae", "val_mae"):
        ax.plot(epochs, [h.get(key, math.nan) for h in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE (years)")
    ax.legend()
    return fig


def train_and_register(
    frame, training_set: dict, train_config, cfg_hash: str, train_records: list, val_records: list,
    read_bytes: Callable[[str], bytes], client, model_name: str, dataset_uri: str, dagster_run_id: str,
    pretrained_run_id: str = "", log: Callable[[str], None] = print, reader_weights: str | None = None,
    line_reader: str | None = None,
) -> RegisteredTraining:
    """Inside the active MLflow run: log params, tags and the training set, train (per-epoch metrics),
    calibrate the 90 % interval on the validation coins (conformal), log the learning curve and the model
    with its signature, register it as a new version of ``model_name`` with its tags, and end the run."""
    import mlflow
    import numpy as np

    from coin_assets.ml.calibration import calibrate_model
    from coin_assets.ml.train import predict, train_model

    mlflow.log_params({f"train.{k}": v for k, v in asdict(train_config).items()})
    mlflow.log_params({"training_set.coins": len(frame),
                       **{f"training_set.{k}": v for k, v in training_set["splits"].items()}})
    partitions = training_set["partitions"]
    tags = {
        "training_set_hash": training_set["content_hash"], "config_hash": cfg_hash,
        "dagster_run_id": dagster_run_id, "pretrained_run_id": pretrained_run_id,
        "partition_range": f"{partitions[0]}..{partitions[-1]}" if partitions else "",
    }
    mlflow.set_tags(tags)
    mlflow.log_input(mlflow.data.from_pandas(frame, source=dataset_uri, name="training_set",
                                             digest=training_set["content_hash"][:36]), context="training")

    def on_epoch_end(row: dict) -> None:
        mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        log(f"epoch {row['epoch']}: {row}")

    result = train_model(train_records, val_records, train_config, on_epoch_end=on_epoch_end, read_bytes=read_bytes)
    scale = None
    val_years, val_sigmas = predict(result.model, val_records, train_config.image_size, read_bytes=read_bytes)
    try:
        scale = calibrate_model(result.model, [r.year for r in val_records], val_years, val_sigmas)
        mlflow.log_metric("interval_scale", scale)
    except ValueError as err:  # too few validation coins for a 90 % conformal quantile
        log(f"interval not calibrated: {err}")
    final_val = result.history[-1] if result.history else {}
    mlflow.log_metrics({"final_val_mae": float(final_val.get("val_mae", np.nan)),
                        "train_seconds": result.seconds, "train_pairs_per_second": result.pairs_per_second})
    curve = learning_curve(result.history)
    mlflow.log_figure(curve, "learning_curve.png")
    if reader_weights:
        from coin_assets.ml.year_reading import sha256_of

        mlflow.set_tag("year_reader_sha256", sha256_of(reader_weights))
        if line_reader:
            mlflow.set_tag("year_line_reader_sha256", sha256_of(line_reader))
    info = _log_photo_model(result.model, frame, train_config, read_bytes, model_name, reader_weights, line_reader)
    version = str(info.registered_model_version)
    run_id = mlflow.active_run().info.run_id
    version_tags = {**tags, "image_size": train_config.image_size, "labelled_coins": len(frame),
                    "backbone": train_config.backbone, "mode": train_config.mode, "use_crops": train_config.use_crops}
    version_tags.pop("partition_range")
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    mlflow.end_run()
    return RegisteredTraining(version=version, run_id=run_id, result=result, curve=curve, interval_scale=scale)


def _log_photo_model(model, frame, train_config, read_bytes: Callable[[str], bytes], model_name: str,
                     reader_weights: str | None = None, line_reader: str | None = None):
    """Register the trained module as a raw-photo pyfunc (coin_assets.ml.pyfunc), its input example the
    first validation (else training) coin's whole gold photos that the packaged preprocessing can score."""
    from coin_assets.ml.lifecycle import coin_records
    from coin_assets.ml.pyfunc import PhotoModelConfig, log_photo_model

    # crop inside the pyfunc exactly when training saw crops (coin_records falls back to whole photos)
    trained_on_crops = bool(train_config.use_crops) and "front_crop_path" in frame and bool(
        frame["front_crop_path"].notna().mean() >= 0.5)
    config = PhotoModelConfig(image_size=train_config.image_size, extra={"coin_crop": trained_on_crops})
    candidates = [*coin_records(frame, "val", use_crops=False), *coin_records(frame, "train", use_crops=False)]
    errors = []
    for record in candidates[:20]:
        try:
            return log_photo_model(model, config, read_bytes(record.front_path), read_bytes(record.back_path),
                                   registered_model_name=model_name, reader_weights=reader_weights,
                                   line_reader=line_reader)
        except ValueError as err:  # this coin's photos cannot be scored (no coin found): try the next one
            errors.append(f"{record.coin_id}: {err}")
    raise ValueError(f"no coin of the training set can serve as the model's input example: {errors[:3]}")


def end_run_skipped(reason: str) -> None:
    """The active run (dagster-mlflow opened it for a step that trains nothing) ends KILLED, saying why."""
    import mlflow

    mlflow.set_tag("skipped", reason)
    mlflow.end_run(status="KILLED")


def log_evaluation(client, run_id: str, scored: dict[str, dict], baseline_mae: float) -> None:
    """Test metrics of each role (``candidate``, ``production``) and the mean baseline onto the candidate's run."""
    from mlflow.entities import Metric

    metrics = [Metric(f"{role}_test_{k}", float(v), 0, 0) for role, m in scored.items() for k, v in m.items()]
    client.log_batch(run_id, metrics=[*metrics, Metric("mean_baseline_test_mae", float(baseline_mae), 0, 0)])


def register_base_version(client, model_name: str, image_size: int, reader_weights: str, experiment_id: str,
                          lock_url: str | None = None, log: Callable[[str], None] = print,
                          line_reader: str | None = None) -> str | None:
    """On a registry with no version of ``model_name``: log the base version (the year reader with a prior as
    its whole-coin estimate, :mod:`coin_assets.ml.base_model`) in its own MLflow run, register it and make it
    production. Returns its version, or None when the model already has versions (nothing is done)."""

    import mlflow

    from coin_assets.ml import registry as reg
    from coin_assets.ml.base_model import BASE_VERSION_TAG, PriorYear
    from coin_assets.ml.pyfunc import PhotoModelConfig, log_photo_model
    from coin_assets.ml.year_reading import sha256_of
    from coin_assets.synth import varied

    if reg.all_versions(client, model_name):
        return None
    with reg.registry_lock(client, model_name, lock_url):
        if reg.all_versions(client, model_name):  # another process registered first
            return None
        year_rng, style_rng = varied.coin_rngs(0, 0)  # an input example the packaged preprocessing can score
        pair = varied.render_photo_pair(varied.sample_year(year_rng), varied.sample_style(style_rng), style_rng)
        example = []
        for side in pair:
            buf = io.BytesIO()
            side.image.save(buf, "JPEG", quality=90)
            example.append(buf.getvalue())
        with mlflow.start_run(experiment_id=experiment_id, run_name="base version") as run:
            mlflow.set_tags({BASE_VERSION_TAG: "true", "year_reader_sha256": sha256_of(reader_weights),
                             **({"year_line_reader_sha256": sha256_of(line_reader)} if line_reader else {})})
            info = log_photo_model(PriorYear(), PhotoModelConfig(image_size=image_size), example[0], example[1],
                                   registered_model_name=model_name, reader_weights=reader_weights,
                                   line_reader=line_reader)
            run_id = run.info.run_id
        version = str(info.registered_model_version)
        for key, value in {BASE_VERSION_TAG: "true", "image_size": image_size, "run_id": run_id,
                           "decision": reg.DECISION_PROMOTED, "promoted_at": utcnow().isoformat(timespec="seconds"),
                           "decision_reason": "base version: the committed year reader, before any training"}.items():
            client.set_model_version_tag(model_name, version, key, str(value))
        client.set_registered_model_alias(model_name, reg.PRODUCTION, version)
    log(f"registered v{version} of {model_name} as the base version (production)")
    return version
