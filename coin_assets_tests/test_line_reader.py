"""PP-OCR's line recogniser fine-tuned on coins: the trainable network, its lines, its file, its training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from coin_assets.ml import line_reader_training as lr
from coin_assets.ml import reader_crops as rc
from coin_assets.ml.year_reading import (
    LINE_READER_RECORD,
    LINE_READER_WEIGHTS,
    OcrLineReader,
    load_line_model,
    sha256_of,
    shared_ocr_reader,
)
from coin_assets.synth import varied as v


def printed_line(text: str, height: int = 48) -> np.ndarray:
    """A dark line of text on light metal-grey, 48 px tall, as the reader cuts a clear one."""
    font = v._font(v.TRAIN_FONTS[0][0], 30)
    width = int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=font)) + 24
    img = Image.new("L", (width, height), 190)
    ImageDraw.Draw(img).text((12, 6), text, fill=60, font=font)
    return np.asarray(img, np.uint8)


@pytest.fixture(scope="module")
def network():
    return lr.trainable_line_reader()


def test_a_year_turned_over_reads_only_when_its_digits_allow_it():
    assert lr.turned_over("1961") == "1961"
    assert lr.turned_over("1986") == "9861"
    assert lr.turned_over("1948") is None
    assert lr.turned_over("") is None


def test_the_trainable_network_reads_what_the_wheels_recogniser_reads(network):
    lines = [printed_line(t) for t in ("1948", "2017", "REPUBLICA", "10")]
    wheel = OcrLineReader(model_path=None)([Image.fromarray(a) for a in lines])
    mine = lr.torch_reader(network)(lines)
    assert [d.text for d in wheel] == ["1948", "2017", "REPUBLICA", "10"]
    assert [text for text, _ in mine] == [d.text for d in wheel]
    # the cut-down head keeps the wheel's rows: a clear line is as sure as it was
    assert all(conf >= 0.9 * d.confidence for (_, conf), d in zip(mine, wheel, strict=True))
    assert network(lr.line_batch([(lines[0], "")])[0]).shape[-1] == len(lr.CLASSES)


def test_the_exported_file_reads_as_the_network_and_is_checked_when_loaded(network, tmp_path):
    path = lr.export_line_reader(network, tmp_path / "line_reader.onnx")
    assert path.stat().st_size < 8_000_000  # float16 weights
    lines = [printed_line(t) for t in ("1999", "ESTADO")]
    from_file = OcrLineReader(model_path=path)([Image.fromarray(a) for a in lines])
    from_torch = lr.torch_reader(network)(lines)
    assert [d.text for d in from_file] == [t for t, _ in from_torch] == ["1999", "ESTADO"]
    assert np.allclose([d.confidence for d in from_file], [c for _, c in from_torch], atol=0.02)
    with pytest.raises(ValueError, match="sha256"):
        load_line_model(path, expected_sha256="0" * 64)
    import onnx

    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="character list"):
        load_line_model(tmp_path / "bare.onnx")


@pytest.mark.slow
def test_mined_lines_carry_the_year_upright_and_nothing_turned_over():
    lines, photos = rc.mine_line_crops(6, seed=4042, workers=1)
    assert [p[0] for p in photos] == ["varied", "struck", "struck", "varied", "struck", "struck"]
    assert all(a.shape[0] == 48 and a.dtype == np.uint8 and a.shape[1] <= rc.LINE_MAX_WIDTH for a, _ in lines)
    years = {tag for _, tag in lines if tag.isdigit()}
    turned = {tag[1:] for _, tag in lines if tag.startswith("~")}
    assert len(years) >= 4  # the year is cut out, upright, in most photos
    assert years <= turned  # every year line is also read turned over, with nothing to read
    assert sum(p[2] for p in photos) == sum(1 for _, tag in lines if tag.isdigit())
    assert any(tag == "?" for _, tag in lines)  # legends and numbers away from the year


def test_small_photos_are_drawn_at_small_sizes_and_named_in_the_command():
    for i in (0, 1):  # a drawn coin, a struck one
        kind, _, _, with_year, without_year, _ = rc._line_pair(4042, i, small=True)
        assert with_year.size == without_year.size and with_year.size in rc.SMALL_LINE_PHOTO_SIZES, kind
        assert rc._line_pair(4042, i)[3].size not in rc.SMALL_LINE_PHOTO_SIZES
    config = lr.LineReaderConfig(small_photos=600)
    assert "--small-photos 600" in lr.command(config, "reader.onnx")
    assert "--small-photos" not in lr.command(lr.LineReaderConfig(), "reader.onnx")


def test_labels_teach_nothing_on_a_turned_year_and_the_wheels_reading_elsewhere():
    lines = [(printed_line("1948"), "1948"), (printed_line("1948")[::-1, ::-1].copy(), "~1948"),
             (printed_line("1961")[::-1, ::-1].copy(), "~1961"), (printed_line("ESTADO"), "?"),
             (np.full((48, 60), 128, np.uint8), "?")]
    labelled = lr.label_lines(lines, min_confidence=0.8, threads=1)
    assert [t for _, t in labelled] == ["1948", "", "1961", "ESTADO"]  # the blank line reads nothing sure: dropped


def test_training_runs_and_resumes_from_its_checkpoint(tmp_path):
    years = [(printed_line(str(y)), str(y)) for y in (1948, 1975, 2003, 2017)]
    others = [(printed_line(t), t) for t in ("ESTADO", "10", "REPUBLICA", "")]
    lines = [line for pair in zip(years, others, strict=True) for line in pair] * 2
    config = lr.LineReaderConfig(batch_size=4, max_steps=2, checkpoint_every=1, minutes=5, val_share=0.25)
    first = lr.train_line_reader(config, checkpoint=tmp_path / "ckpt.pt", lines=lines)
    assert first.steps == 2 and len(first.history) == 2
    assert first.base_metrics["year_lines"] == first.val_metrics["year_lines"] > 0
    again = lr.train_line_reader(lr.LineReaderConfig(**{**config.__dict__, "max_steps": 3}),
                                 checkpoint=tmp_path / "ckpt.pt", lines=lines)
    assert again.steps == 3 and [h["step"] for h in again.history] == [1, 2, 3]
    out = lr.save_line_reader(again, config, tmp_path / "line_reader.onnx")
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == sha256_of(out) and record["corpus_hash"] and "line_reader_training" in record["command"]


def test_a_saved_line_reader_is_the_start_of_the_next_run_with_its_late_convolutions_learning(tmp_path):
    import torch

    years = [(printed_line(str(y)), str(y)) for y in (1948, 1975, 2003, 2017)]
    others = [(printed_line(t), t) for t in ("ESTADO", "10", "REPUBLICA", "")]
    lines = [line for pair in zip(years, others, strict=True) for line in pair] * 2
    config = lr.LineReaderConfig(batch_size=4, max_steps=2, checkpoint_every=5, minutes=5, val_share=0.25,
                                 learning_rate=1e-3)
    first = lr.train_line_reader(config, lines=lines)
    saved = lr.save_line_reader(first, config, tmp_path / "first.onnx")
    fresh = lr.trainable_line_reader()
    lr.load_onnx_values(fresh, saved)
    # float16 storage: the loaded network is the trained one to within float16's precision
    for name, value in lr.onnx_values(first.model).items():
        assert np.allclose(lr.onnx_values(fresh)[name], value, atol=2e-3 * (1 + np.abs(value).max())), name
    before = {n: v.copy() for n, v in lr.onnx_values(fresh).items()}
    follow = lr.LineReaderConfig(**{**config.__dict__, "start_from": str(saved), "trainable_convs_from": 54,
                                    "blur_and_stretch": True})
    second = lr.train_line_reader(follow, lines=lines)
    assert second.start_metrics["year_lines"] > 0
    convs = [m for m in second.model.modules() if isinstance(m, torch.nn.Conv2d)]
    after = lr.onnx_values(second.model)
    changed = {name for name in after if not np.array_equal(after[name], before[name])}
    conv_weights = {name for name, t in lr._tensors_by_onnx_name(second.model).items()
                    if any(t is m.weight for m in convs)}
    late = {name for name, t in lr._tensors_by_onnx_name(second.model).items()
            if any(t is m.weight for m in convs[54:])}
    assert late and late <= changed and not (conv_weights - late) & changed
    record = json.loads(lr.save_line_reader(second, follow, tmp_path / "second.onnx").with_suffix(".json").read_text())
    assert "--start-from" in record["command"] and "--trainable-convs-from 54" in record["command"]
    assert record["val_metrics_start"]


def test_the_committed_line_reader_matches_its_record_and_reads_by_default():
    record = json.loads(LINE_READER_RECORD.read_text())
    assert sha256_of(LINE_READER_WEIGHTS) == record["sha256"]
    for key in ("config", "corpus_hash", "val_metrics", "val_metrics_wheel", "command", "steps"):
        assert record[key], key
    # what fine-tuning was for: more of the generated coins' year lines read with trust than the wheel's reads
    assert record["val_metrics"]["year_exact"] > record["val_metrics_wheel"]["year_exact"]
    assert shared_ocr_reader().model_path == LINE_READER_WEIGHTS


@pytest.mark.slow
def test_the_asset_fine_tunes_and_the_next_version_reads_with_its_file(tmp_path):
    from dagster import materialize

    from coin_assets.defs.assets.model import base_model_version, year_line_reader_training
    from coin_assets.defs.resources import CoinStorage, MlflowRegistry
    from coin_assets.ml import registry as reg
    from coin_assets.ml.pyfunc import load_photo_predictor
    from coin_assets.ml.year_reading import LINE_READER_POINTER

    registry = MlflowRegistry(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    storage = CoinStorage(root=str(tmp_path / "data"))
    resources = {"storage": storage, "mlflow_registry": registry}
    trained = materialize([year_line_reader_training], resources=resources, run_config={"ops": {
        "year_line_reader_training": {"config": {"photos": 6, "max_steps": 1, "minutes": 5}}}})
    assert trained.success
    value = trained.output_for_node("year_line_reader_training")
    assert json.loads(storage.store().read_bytes(LINE_READER_POINTER))["weights_key"] == value["weights_key"]
    file_sha = sha256_of_bytes(storage.store().read_bytes(value["weights_key"]))
    run = registry.client().get_run(value["mlflow_run_id"])
    assert run.data.tags["kind"] == "year_line_reader_training" and "val_year_exact" in run.data.metrics
    assert materialize([base_model_version], resources=resources).success
    predictor = load_photo_predictor(reg.model_version_uri(registry.model_name, "1"))
    assert predictor.config.extra["year_reader"]["line_reader_sha256"] == file_sha
    assert sha256_of(predictor.reader.ocr.model_path) == file_sha


def sha256_of_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
