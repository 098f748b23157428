"""A fresh instance serves the committed year reader as its base version; the first trained model that reads as
well replaces it."""

from __future__ import annotations

import io
from dataclasses import replace

from dagster import materialize

from coin_assets.defs.assets.model import base_model_version
from coin_assets.defs.resources import CoinStorage, MlflowRegistry
from coin_assets.ml import registry as reg
from coin_assets.ml.base_model import BASE_VERSION_TAG
from coin_assets.ml.year_reading import committed_record
from coin_assets.synth import varied as v


def test_a_fresh_instance_registers_the_committed_reader_as_production_and_it_reads(tmp_path):
    from coin_assets.ml.pyfunc import PhotoModelConfig, load_photo_predictor

    registry = MlflowRegistry(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    resources = {"storage": CoinStorage(root=str(tmp_path / "data")), "mlflow_registry": registry}
    first = materialize([base_model_version], resources=resources)
    assert first.success
    assert first.output_for_node("base_model_version")["registered_version"] == "1"
    client = registry.client()
    production = reg.get_alias_version(client, registry.model_name, reg.PRODUCTION)
    assert production.version == "1" and production.tags[BASE_VERSION_TAG] == "true"
    # the weights it carries are the committed ones, checked against their recorded sha256 when loaded
    uri = reg.model_version_uri(registry.model_name, "1")
    predictor = load_photo_predictor(uri)
    record = committed_record()
    assert predictor.config.extra["year_reader"]["sha256"] == record["sha256"]
    # so is the fine-tuned line reader, and it is what the version reads with
    from coin_assets.ml.year_reading import LINE_READER_WEIGHTS, sha256_of

    assert predictor.config.extra["year_reader"]["line_reader_sha256"] == sha256_of(LINE_READER_WEIGHTS)
    assert predictor.reader.ocr.model_path.name == LINE_READER_WEIGHTS.name
    assert isinstance(predictor.config, PhotoModelConfig)

    # it answers: a legible year is read, a coin without one is unreadable (never the prior's middle year)
    photos = []
    style = replace(v.sample_style(v.coin_rngs(5151, 0)[1]), placement="below", blur=0.0, wear=0.0,
                    relief="printed_dark", rotation=10.0)
    for year, text in ((1984, None), (None, "")):
        pair = v.render_photo_pair(year, style, v.coin_rngs(5151, 0)[1], year_text=text)
        photos.append([_jpeg(side.image) for side in pair])
    out = predictor.predict_photos([f for f, _ in photos], [b for _, b in photos])
    assert out["year"].iloc[0] == 1984 and not out["unreadable"].iloc[0], out.iloc[0].to_dict()
    assert bool(out["unreadable"].iloc[1]) or bool(out["needs_review"].iloc[1])

    # a second run on the same instance changes nothing
    again = materialize([base_model_version], resources=resources)
    assert again.output_for_node("base_model_version")["registered_version"] is None
    assert [m.version for m in reg.all_versions(client, registry.model_name)] == ["1"]


def test_the_first_trained_model_replaces_the_base_version_when_it_reads_as_well():
    common = dict(candidate_version="2", production_version="1", production_metrics={"mae": 3.0},
                  sanity_problems=[], reading_tolerance=0.05, production_is_base=True)
    replaced = reg.decide_promotion(candidate_metrics={"mae": 12.0, "reading_exact": 0.8},
                                    reading_floors={"production v1": 0.8}, **common)
    assert replaced.promote and "base version" in replaced.reason
    forgot = reg.decide_promotion(candidate_metrics={"mae": 1.0, "reading_exact": 0.2},
                                  reading_floors={"production v1": 0.8}, **common)
    assert not forgot.promote and "reads worse than production v1" in forgot.reason


def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()
