"""gold → training_set → coin_year_model → model_evaluation → promotion_decision."""

import dataclasses
import typing
from dataclasses import asdict

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetObservation, Config, MetadataValue, Output, asset
from dagster_duckdb import DuckDBResource
from pydantic import Field, create_model

from coin_assets.defs.assets.review import review_labels
from coin_assets.defs.metadata import png_markdown, table_preview
from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.defs.resources import CoinStorage, MlflowRegistry, ServingApi
from coin_assets.ml import model_serialization as ser
from coin_assets.ml import registry as reg
from coin_assets.ml import training_set as ts
from coin_assets.ml.config import PretrainConfig, TrainConfig
from coin_assets.ml.lifecycle import coin_records, config_hash, mean_baseline_mae, score


def run_config_fields(dataclass_type: type) -> type[Config]:
    """A Dagster Config with one field per field of `dataclass_type` (coin_assets.ml.config): its type, its
    default and, where the dataclass field has one, ``metadata["description"]`` as the launchpad's text.
    The dataclass is the one source; the run configs below subclass this and add the run-only fields."""
    hints = typing.get_type_hints(dataclass_type)
    fields = {}
    for f in dataclasses.fields(dataclass_type):
        if f.default is not dataclasses.MISSING:
            default = {"default": f.default}
        elif f.default_factory is not dataclasses.MISSING:
            default = {"default_factory": f.default_factory}
        else:
            default = {}  # required
        fields[f.name] = (hints[f.name], Field(**default, description=f.metadata.get("description")))
    return create_model(f"{dataclass_type.__name__}Fields", __base__=Config, __module__=__name__,
                        __doc__=f"The fields of {dataclass_type.__module__}.{dataclass_type.__qualname__}.",
                        **fields)


def to_dataclass(config: Config, dataclass_type: type):
    """The dataclass of a run config built by `run_config_fields` (its run-only fields left out)."""
    return dataclass_type(**{f.name: getattr(config, f.name) for f in dataclasses.fields(dataclass_type)})


class TrainingRunConfig(run_config_fields(TrainConfig)):
    """Every training choice (coin_assets.ml.config.TrainConfig), settable as run config in the launchpad."""

    retrain_same_data: bool = Field(False, description="train even if a version exists for this data and config")
    use_pretrained: bool = Field(True, description="start from the latest synthetic_pretraining weights when "
                                 "its backbone, mode and image size match (and weights_path is not set)")
    use_year_reader: bool = Field(True, description="ship the year reader (text detector + the recogniser of "
                                  "year_reader_pretraining, else the committed one) inside the version; it is not "
                                  "fine-tuned, so the version reads as the pre-trained reader does")

    def train_config(self) -> TrainConfig:
        return to_dataclass(self, TrainConfig)


class PretrainRunConfig(run_config_fields(PretrainConfig)):
    """Synthetic pre-training choices (coin_assets.ml.config.PretrainConfig; the demo default: 20 000 pairs,
    at most 9 minutes of training)."""

    def pretrain_config(self) -> PretrainConfig:
        return to_dataclass(self, PretrainConfig)


class PromotionConfig(Config):
    min_mae_improvement: float = Field(0.0, description="candidate must beat production MAE by this many years")
    reading_tolerance: float = Field(0.05, description="a candidate whose reading suite score is below production's "
                                     "or the pre-trained reader's by more than this share is not promoted")


class EvaluationConfig(Config):
    reading_suite_per_placement: int = Field(6, description="generated photos per year placement in the frozen "
                                             "reading suite that every candidate reads")
    reading_suite_photographic_per_placement: int = Field(
        6, description="photographed struck coins per year placement in the reading suite (0: drawn coins only)")
    reading_suite_no_year: int = Field(6, description="coins without a year in the reading suite")
    reading_suite_seed: int = Field(7001, description="the suite's seed (change it and no earlier figure compares)")


@asset(deps=["gold_images", review_labels], group_name="model", kinds={"duckdb", "parquet"}, pool=DUCKDB_WRITER_POOL)
def training_set(
    context: AssetExecutionContext, storage: CoinStorage, duckdb: DuckDBResource, mlflow_registry: MlflowRegistry
) -> Output[dict]:
    """All labelled coins with both sides in gold, across all partitions, with a train/val/test split
    that is a function of the coin id. Snapshot: ml/training_sets/<content hash>.parquet."""
    with duckdb.get_connection() as conn:
        frame = ts.labelled_coins(conn)
    digest = ts.content_hash(frame)
    snapshot = f"{ts.SNAPSHOT_PREFIX}/{digest}.parquet"
    store = storage.store()
    if not store.exists(snapshot):
        store.write_bytes(snapshot, ts.to_parquet_bytes(frame))
    mlflow_registry.ensure_experiment()
    counts = ts.split_counts(frame)
    value = {
        "snapshot_path": snapshot,
        "content_hash": digest,
        "coins": len(frame),
        "splits": counts,
        "partitions": sorted({str(d)[:10] for d in frame["partition_date"]}),
    }
    return Output(
        value,
        metadata={
            "content_hash": digest,
            "snapshot_path": snapshot,
            "coins": len(frame),
            **{f"{k}_coins": v for k, v in counts.items()},
            "year_histogram": _year_histogram(frame),
            "preview": table_preview(frame[["coin_id", "partition_date", "label_year", "label_source", "split"]]),
        },
    )


def _year_histogram(frame: pd.DataFrame) -> MetadataValue:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    for split in ts.SPLITS:
        years = frame.loc[frame["split"] == split, "label_year"]
        if len(years):
            ax.hist(years, bins=30, alpha=0.6, label=f"{split} ({len(years)})")
    ax.set_xlabel("label year")
    ax.set_ylabel("coins")
    ax.legend()
    return png_markdown(fig)


def _load_frame(storage: CoinStorage, training: dict) -> pd.DataFrame:
    return ts.from_parquet_bytes(storage.store().read_bytes(training["snapshot_path"]))


@asset(group_name="model", kinds={"pytorch", "mlflow"})
def synthetic_pretraining(
    context: AssetExecutionContext, config: PretrainRunConfig, storage: CoinStorage, mlflow_registry: MlflowRegistry
) -> Output[dict]:
    """A reader pre-trained on a synthetic corpus from coin_assets.synth.varied (digits are the only cue
    to the year), its 90 % interval calibrated on a validation corpus; the weights in
    ml/pretrained/<run id>.pt, tracked in MLflow. coin_year_model fine-tunes from the latest one."""
    import json

    from coin_assets.ml.pretrain import pretrain
    from coin_assets.ml.tracking import PRETRAINED_POINTER, log_pretraining, state_bytes

    pc = config.pretrain_config()
    result = pretrain(pc, on_epoch_end=lambda row: context.log.info(f"pre-training epoch {row}"))
    store = storage.store()
    experiment = mlflow_registry.ensure_experiment()
    mlflow = mlflow_registry.activate()
    mlflow.set_experiment(experiment_id=experiment)
    key = f"ml/pretrained/{context.run.run_id}.pt"
    store.write_bytes(key, state_bytes(result.model))
    run_id = log_pretraining(result, pc, key, store.uri(key), dagster_run_id=context.run.run_id)
    value = {"weights_key": key, "mlflow_run_id": run_id, "backbone": pc.backbone, "mode": pc.mode,
             "image_size": pc.image_size, "projection_dim": pc.projection_dim, "reader": pc.reader,
             "val_metrics": result.val_metrics, "interval_scale": result.interval_scale}
    store.write_bytes(PRETRAINED_POINTER, json.dumps(value, default=float).encode())  # after the weights
    return Output(value, metadata={
        "mlflow_run_id": run_id,
        "weights": store.uri(key),
        "corpus_pairs": pc.corpus_size,
        "corpus_seconds": round(result.corpus_seconds, 1),
        "train_seconds": round(result.seconds, 1),
        "steps": result.steps,
        "train_pairs_per_second": round(result.pairs_per_second, 1),
        "val_mae": float(result.val_metrics.get("mae", np.nan)),
        "val_exact": float(result.val_metrics.get("exact", np.nan)),
        "val_coverage_90": float(result.val_metrics.get("coverage_90", np.nan)),
        "unreadable_threshold": float(result.min_confidence),
        "history": table_preview(pd.DataFrame(result.history), limit=50),
    })


class ReaderPretrainRunConfig(Config):
    """The year reader's recogniser training (coin_assets.ml.recognizer_training.RecognizerConfig)."""

    minutes: float = Field(30.0, description="time budget; `make pretrain` runs the same code")
    corpus_size: int = Field(40000, description="generated text strips held in memory")
    max_steps: int | None = Field(None, description="stop after this many steps (smoke runs)")
    seed: int = 0
    mined_photos: int = Field(0, description="also train on the reader's own detected crops of this many "
                                             "generated photos (about 1 s a photo to cut and label)")
    from_committed: bool = Field(False, description="start from the package's committed weights")


@asset(group_name="model", kinds={"pytorch", "mlflow"})
def year_reader_pretraining(
    context: AssetExecutionContext, config: ReaderPretrainRunConfig, storage: CoinStorage,
    mlflow_registry: MlflowRegistry,
) -> Output[dict]:
    """The year reader's recogniser trained on generated text strips (years, denominations, legends, mint
    marks, founding dates, in the generator's metals and reliefs), tracked in MLflow; the weights in
    ml/year_reader/<run id>.pt. coin_year_model ships the latest one inside every new version (the package's
    committed weights until this has run)."""
    import json
    from dataclasses import asdict as as_dict

    from coin_assets.ml.recognizer_training import RecognizerConfig, train_recognizer
    from coin_assets.ml.tracking import log_reader_pretraining
    from coin_assets.ml.year_reading import READER_WEIGHTS, READER_WEIGHTS_POINTER, reader_state_bytes

    rc = RecognizerConfig(minutes=config.minutes, corpus_size=config.corpus_size, max_steps=config.max_steps,
                          seed=config.seed, val_size=min(RecognizerConfig.val_size, max(50, config.corpus_size // 10)),
                          mined_photos=config.mined_photos,
                          mined_val_photos=min(RecognizerConfig.mined_val_photos, max(5, config.mined_photos // 10)),
                          init_weights=str(READER_WEIGHTS) if config.from_committed else None)
    result = train_recognizer(rc, on_log=lambda row: context.log.info(f"recogniser {row}"))
    store = storage.store()
    key = f"ml/year_reader/{context.run.run_id}.pt"
    store.write_bytes(key, reader_state_bytes(result.model, rc))
    mlflow = mlflow_registry.activate()
    mlflow.set_experiment(experiment_id=mlflow_registry.ensure_experiment())
    run_id = log_reader_pretraining(result, as_dict(rc), store.uri(key), dagster_run_id=context.run.run_id)
    value = {"weights_key": key, "mlflow_run_id": run_id, "val_metrics": result.val_metrics,
             "corpus_hash": result.corpus_hash}
    store.write_bytes(READER_WEIGHTS_POINTER, json.dumps(value, default=float).encode())  # after the weights
    return Output(value, metadata={
        "mlflow_run_id": run_id, "weights": store.uri(key), "steps": result.steps,
        "train_seconds": round(result.seconds, 1), "corpus_strips": rc.corpus_size,
        "val_line_exact": float(result.val_metrics.get("line_exact", np.nan)),
        "val_year_exact": float(result.val_metrics.get("year_exact", np.nan)),
        "history": table_preview(pd.DataFrame(result.history), limit=50),
    })


class LineReaderRunConfig(Config):
    """Fine-tuning PP-OCR's line recogniser on coins (coin_assets.ml.line_reader_training.LineReaderConfig)."""

    minutes: float = Field(40.0, description="time budget; `make pretrain` runs the same code")
    photos: int = Field(1500, description="generated photos whose lines are cut and labelled (about 1 s each)")
    max_steps: int | None = Field(None, description="stop after this many steps (smoke runs)")
    learning_rate: float = Field(1e-4, description="AdamW's, with a cosine over the time budget")
    from_committed: bool = Field(False, description="start from the package's committed line reader, not the wheel's")
    trainable_convs_from: int | None = Field(
        None, description="convolutions from this one on (0..56, the graph's order) learn too; none: all frozen")
    blur_and_stretch: bool = Field(False, description="also blur and stretch training lines")


@asset(group_name="model", kinds={"pytorch", "onnx", "mlflow"})
def year_line_reader_training(
    context: AssetExecutionContext, config: LineReaderRunConfig, storage: CoinStorage,
    mlflow_registry: MlflowRegistry,
) -> Output[dict]:
    """PP-OCR's line recogniser fine-tuned on the lines the year reader cuts from generated photos of struck and
    drawn coins, tracked in MLflow; the file in ml/year_line_reader/<run id>.onnx. coin_year_model and
    base_model_version ship the latest one inside every new version (the package's committed one until this
    has run)."""
    import json
    import tempfile
    from dataclasses import asdict as as_dict
    from pathlib import Path

    from coin_assets.ml.line_reader_training import LineReaderConfig, save_line_reader, train_line_reader
    from coin_assets.ml.tracking import log_reader_pretraining
    from coin_assets.ml.year_reading import LINE_READER_POINTER, LINE_READER_WEIGHTS

    lc = LineReaderConfig(minutes=config.minutes, photos=config.photos, max_steps=config.max_steps,
                          learning_rate=config.learning_rate,
                          start_from=str(LINE_READER_WEIGHTS) if config.from_committed else None,
                          trainable_convs_from=config.trainable_convs_from, blur_and_stretch=config.blur_and_stretch)
    result = train_line_reader(lc, on_log=lambda row: context.log.info(f"line reader {row}"))
    store = storage.store()
    key = f"ml/year_line_reader/{context.run.run_id}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        path = save_line_reader(result, lc, Path(tmp) / "year_line_reader.onnx")
        store.write_bytes(key, path.read_bytes())
    mlflow = mlflow_registry.activate()
    mlflow.set_experiment(experiment_id=mlflow_registry.ensure_experiment())
    run_id = log_reader_pretraining(result, as_dict(lc), store.uri(key), dagster_run_id=context.run.run_id,
                                    kind="year_line_reader_training")
    value = {"weights_key": key, "mlflow_run_id": run_id, "val_metrics": result.val_metrics,
             "wheel_val_metrics": result.base_metrics, "corpus_hash": result.corpus_hash}
    store.write_bytes(LINE_READER_POINTER, json.dumps(value, default=float).encode())  # after the file
    return Output(value, metadata={
        "mlflow_run_id": run_id, "file": store.uri(key), "steps": result.steps, "lines": result.lines,
        "train_seconds": round(result.seconds, 1),
        "val_year_exact": float(result.val_metrics.get("year_exact", np.nan)),
        "wheel_val_year_exact": float(result.base_metrics.get("year_exact", np.nan)),
        "val_turned_read_as_year": float(result.val_metrics.get("turned_read_as_year", np.nan)),
        "history": table_preview(pd.DataFrame(result.history), limit=50),
    })


@asset(group_name="model", kinds={"pytorch", "mlflow"})
def base_model_version(context: AssetExecutionContext, storage: CoinStorage, mlflow_registry: MlflowRegistry) -> Output[dict]:
    """On an instance with no model yet: the year reader (the latest year_reader_pretraining, else the
    package's committed weights) registered as the base version and made production, so the API reads years
    before anything is trained. Nothing is done once the model has versions."""
    from coin_assets.ml.tracking import register_base_version
    from coin_assets.ml.year_reading import sha256_of

    weights = _reader_weights(storage)
    version = register_base_version(
        mlflow_registry.client(), mlflow_registry.model_name, TrainConfig().image_size, weights,
        experiment_id=mlflow_registry.ensure_experiment(), lock_url=mlflow_registry.lock_url, log=context.log.info,
        line_reader=_line_reader_file(storage))
    value = {"registered_version": version, "reader_sha256": sha256_of(weights)}
    return Output(value, metadata={
        "registered": version is not None,
        "version": version or "none (the model already has versions)",
        "reader_sha256": value["reader_sha256"],
    })


def _pretrained_for(storage: CoinStorage, train_config: TrainConfig) -> tuple[dict | None, str]:
    """The latest pre-training when it fits this config, or None and why not."""
    import json

    from coin_assets.ml.tracking import PRETRAINED_POINTER

    store = storage.store()
    if not store.exists(PRETRAINED_POINTER):
        return None, "synthetic_pretraining has not been materialized"
    latest = json.loads(store.read_bytes(PRETRAINED_POINTER))
    wanted = (train_config.backbone, train_config.mode, train_config.image_size, train_config.projection_dim,
              train_config.reader if train_config.digit_heads else "pooled")
    have = (latest["backbone"], latest["mode"], latest["image_size"], latest.get("projection_dim"),
            latest.get("reader", "pooled"))
    if wanted != have:
        return None, f"pre-trained {have} does not match this config {wanted}"
    return latest, "ok"


@asset(
    group_name="model",
    kinds={"pytorch", "mlflow"},
    deps=[synthetic_pretraining],
    # dagster-mlflow's resource is a legacy resource: all of this asset's resources come by key
    required_resource_keys={"mlflow", "storage", "mlflow_registry"},
    output_required=False,
)
def coin_year_model(context: AssetExecutionContext, config: TrainingRunConfig, training_set: dict):
    """A dual-image year regressor (torchvision backbone, weights=None) trained on the training set,
    tracked in MLflow (params, per-epoch curves, model with signature, training data, Dagster run id)
    and registered as a new version. Skips (no new version) when this data and config were trained."""
    storage: CoinStorage = context.resources.storage
    mlflow_registry: MlflowRegistry = context.resources.mlflow_registry
    train_config = config.train_config()
    cfg_hash = config_hash(train_config)
    client = mlflow_registry.client()
    existing = reg.find_version(client, mlflow_registry.model_name, training_set["content_hash"], cfg_hash)
    if existing is not None and not config.retrain_same_data:
        reason = (f"not retrained: version {existing.version} was already trained on training set "
                  f"{training_set['content_hash'][:12]} with this config (set retrain_same_data: true to train again)")
        context.log.warning(reason)
        # visible where a person looks, not only in the step log: a run tag and an observation on the asset
        context.instance.add_run_tags(context.run.run_id, {"coin_assets/coin_year_model": "not retrained",
                                                           "coin_assets/existing_version": str(existing.version)})
        context.log_event(AssetObservation(asset_key=context.asset_key, metadata={
            "skipped": reason, "existing_version": str(existing.version),
            "training_set_hash": training_set["content_hash"], "config_hash": cfg_hash}))
        from coin_assets.ml.tracking import end_run_skipped

        end_run_skipped(f"v{existing.version} was trained on this training set and config")
        return
    frame = _load_frame(storage, training_set)
    train_records = coin_records(frame, "train", train_config.use_crops)
    val_records = coin_records(frame, "val", train_config.use_crops)
    if len(train_records) < 2 or not val_records:
        raise ValueError(
            f"training set {training_set['content_hash'][:12]} has {len(train_records)} train and "
            f"{len(val_records)} validation coins: label more coins before training"
        )
    pretrained = None
    if config.use_pretrained and not train_config.weights_path:
        pretrained, why = _pretrained_for(storage, train_config)
        context.log.info(f"fine-tuning from pre-training run {pretrained['mlflow_run_id']}" if pretrained
                         else f"training from scratch: {why}")
    reader_weights = _reader_weights(storage) if config.use_year_reader else None
    if reader_weights:
        context.log.info(f"the version reads the year with {reader_weights}")
    if pretrained:
        import tempfile

        weights_file = tempfile.NamedTemporaryFile(suffix=".pt", delete=False)
        weights_file.write(storage.store().read_bytes(pretrained["weights_key"]))
        weights_file.close()
        train_config.weights_path = weights_file.name
    # dagster-mlflow's `mlflow` resource has opened this Dagster run's MLflow run: everything is logged there
    from coin_assets.ml.tracking import train_and_register

    try:
        trained = train_and_register(
            frame, training_set, train_config, cfg_hash, train_records, val_records,
            read_bytes=storage.store().read_bytes, client=client, model_name=mlflow_registry.model_name,
            dataset_uri=storage.store().uri(training_set["snapshot_path"]), dagster_run_id=context.run.run_id,
            pretrained_run_id=pretrained["mlflow_run_id"] if pretrained else "", log=context.log.info,
            reader_weights=reader_weights, line_reader=_line_reader_file(storage) if reader_weights else None)
    finally:
        if pretrained:
            import os

            os.unlink(train_config.weights_path)
    version, run_id, result, curve = trained.version, trained.run_id, trained.result, trained.curve
    final_val = result.history[-1] if result.history else {}
    yield Output(
        {"model_name": mlflow_registry.model_name, "version": version, "run_id": run_id,
         "image_size": train_config.image_size, "training_set_hash": training_set["content_hash"],
         "use_crops": train_config.use_crops,
         "snapshot_path": training_set["snapshot_path"]},
        metadata={
            "model_version": version,
            "mlflow_run_id": run_id,
            "model_uri": reg.model_version_uri(mlflow_registry.model_name, version),
            "val_mae": float(final_val.get("val_mae", np.nan)),
            "epochs": len(result.history),
            "train_seconds": round(result.seconds, 1),
            "train_pairs_per_second": round(result.pairs_per_second, 1),
            "learning_curve": png_markdown(curve),
            "history": table_preview(pd.DataFrame(result.history), limit=50),
        },
    )


def _reader_weights(storage: CoinStorage) -> str:
    """The year reader's recogniser for new versions: the latest ``year_reader_pretraining`` when it has run
    on this instance, else the weights committed with the package."""
    import json
    import tempfile

    from coin_assets.ml.year_reading import READER_WEIGHTS, READER_WEIGHTS_POINTER

    store = storage.store()
    if not store.exists(READER_WEIGHTS_POINTER):
        return str(READER_WEIGHTS)
    latest = json.loads(store.read_bytes(READER_WEIGHTS_POINTER))
    local = tempfile.NamedTemporaryFile(prefix="year_reader_", suffix=".pt", delete=False)
    local.write(store.read_bytes(latest["weights_key"]))
    local.close()
    return local.name


def _line_reader_file(storage: CoinStorage) -> str | None:
    """The fine-tuned line reader for new versions: the latest ``year_line_reader_training`` when it has run on
    this instance, else the one committed with the package (None: the wheel's recogniser reads)."""
    import json
    import tempfile

    from coin_assets.ml.year_reading import LINE_READER_POINTER, line_reader_path

    store = storage.store()
    if not store.exists(LINE_READER_POINTER):
        committed = line_reader_path()
        return str(committed) if committed else None
    latest = json.loads(store.read_bytes(LINE_READER_POINTER))
    local = tempfile.NamedTemporaryFile(prefix="year_line_reader_", suffix=".onnx", delete=False)
    local.write(store.read_bytes(latest["weights_key"]))
    local.close()
    return local.name


@asset(group_name="model", kinds={"pytorch", "mlflow"})
def model_evaluation(
    context: AssetExecutionContext, config: EvaluationConfig, coin_year_model: dict, storage: CoinStorage,
    mlflow_registry: MlflowRegistry,
) -> Output[dict]:
    """The candidate and the production version scored on the same frozen test split (MAE, RMSE,
    median error, exact, within ±2 years, 90 % interval coverage) and on the same frozen reading suite
    (generated photos of every year placement and coins without a year, read through each version's
    raw-photo predictor as a person's photo is), logged to the candidate's MLflow run."""
    from coin_assets.ml.pyfunc import load_photo_predictor
    from coin_assets.ml.reading_suite import reading_suite, score_reading

    client = mlflow_registry.client()
    name = mlflow_registry.model_name
    frame = _load_frame(storage, coin_year_model)
    test_records = coin_records(frame, "test", coin_year_model.get("use_crops", True))
    if not test_records:
        raise ValueError("the training set has no test coins: nothing to evaluate on")
    read_bytes = storage.store().read_bytes
    scored = {}
    production = reg.get_alias_version(client, name, reg.PRODUCTION)
    versions = {"candidate": coin_year_model["version"]}
    if production is not None and production.version != coin_year_model["version"]:
        versions["production"] = production.version
    for role, version in versions.items():
        model = ser.load_torch_model(reg.model_version_uri(name, version))
        image_size = int(client.get_model_version(name, version).tags.get("image_size", coin_year_model["image_size"]))
        scored[role] = score(model, test_records, image_size, read_bytes)["metrics"]
    suite = reading_suite(config.reading_suite_per_placement, config.reading_suite_no_year, config.reading_suite_seed,
                          config.reading_suite_photographic_per_placement)
    for role, version in versions.items():
        try:
            scored[role].update(score_reading(load_photo_predictor(reg.model_version_uri(name, version)), suite))
        except Exception as err:  # an older tensor-input version cannot read photos: it scores no reading
            context.log.warning(f"{role} v{version} could not read the suite: {err}")
    baseline = mean_baseline_mae(frame.loc[frame["split"] == "train", "label_year"], [r.year for r in test_records])
    from coin_assets.ml.tracking import log_evaluation

    log_evaluation(client, coin_year_model["run_id"], scored, baseline)
    value = {
        **coin_year_model,
        "production_version": versions.get("production"),
        "candidate_metrics": scored["candidate"],
        "production_metrics": scored.get("production"),
        "mean_baseline_mae": baseline,
        "test_coins": len(test_records),
    }
    table = pd.DataFrame([{"model": f"{role} v{versions[role]}", **m} for role, m in scored.items()])
    return Output(value, metadata={
        "candidate_version": versions["candidate"],
        "production_version": versions.get("production") or "none",
        "test_coins": len(test_records),
        "candidate_test_mae": float(scored["candidate"]["mae"]),
        "candidate_reading_exact": float(scored["candidate"].get("reading_exact", np.nan)),
        "reading_suite_coins": len(suite),
        "mean_baseline_mae": round(baseline, 3),
        "metrics": table_preview(table),
    })


@asset(group_name="model", kinds={"mlflow"})
def promotion_decision(
    context: AssetExecutionContext, config: PromotionConfig, model_evaluation: dict, mlflow_registry: MlflowRegistry,
    serving_api: ServingApi,
) -> Output[dict]:
    """None → staging when the candidate is sane (finite outputs, signature, a smoke prediction through
    the loaded MLflow model); staging → production only if it beats production's test MAE by the margin.
    The first sane model is promoted. The decision and its reason are this asset's value."""
    client = mlflow_registry.client()
    name = mlflow_registry.model_name
    candidate = model_evaluation["version"]
    uri = reg.model_version_uri(name, candidate)
    problems = ser.sanity_check(uri, _example_for(model_evaluation))
    decision = reg.decide_promotion(
        candidate_version=candidate,
        candidate_metrics=model_evaluation["candidate_metrics"],
        production_version=model_evaluation["production_version"],
        production_metrics=model_evaluation["production_metrics"],
        sanity_problems=problems,
        min_mae_improvement=config.min_mae_improvement,
        reading_floors=_reading_floors(model_evaluation),
        reading_tolerance=config.reading_tolerance,
        production_is_base=_is_base_version(client, name, model_evaluation["production_version"]),
    )
    decision = reg.apply_decision(client, name, decision, lock_url=mlflow_registry.lock_url)
    (context.log.info if decision.promote else context.log.warning)(f"v{candidate}: {decision.reason}")
    if decision.promote:  # best-effort: the API also follows the alias by polling
        context.log.info(f"serving API reload: {serving_api.request_reload()}")
    value = asdict(decision)
    rows = [{"model": f"candidate v{candidate}", **decision.candidate_metrics}]
    if decision.production_metrics:
        rows.append({"model": f"production v{decision.production_version}", **decision.production_metrics})
    return Output(value, metadata={
        "promoted": decision.promote,
        "staged": decision.staged,
        "reason": decision.reason,
        "candidate_version": candidate,
        "previous_production_version": decision.production_version or "none",
        "production_version_now": getattr(reg.get_alias_version(client, name, reg.PRODUCTION), "version", None) or "none",
        "metrics": table_preview(pd.DataFrame(rows)),
    })


def _is_base_version(client, name: str, version: str | None) -> bool:
    from coin_assets.ml.base_model import BASE_VERSION_TAG

    return version is not None and client.get_model_version(name, str(version)).tags.get(BASE_VERSION_TAG) == "true"


def _reading_floors(evaluation: dict) -> dict[str, float]:
    """What a candidate must read as well as (within the tolerance): production on the same suite (on a fresh
    instance, the base version: the pre-trained reader every candidate starts from)."""
    floors = {}
    production = evaluation.get("production_metrics") or {}
    if production.get("reading_exact") is not None:
        floors[f"production v{evaluation['production_version']}"] = float(production["reading_exact"])
    return floors


def _example_for(evaluation: dict) -> np.ndarray:
    from coin_assets.ml.lifecycle import input_example

    return input_example(int(evaluation["image_size"]), batch=2)
