"""The inference-optimised module (coin_assets.ml.inference): the traced, frozen, optimised copy answers
as the eager model does at several batch sizes, on random pairs and on generated coins, for both digit
readers; a module that cannot be traced, or whose trace fixed a branch, is served eagerly with the reason;
the serving API serves the optimised copy and says so on /health, /metadata and /metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from coin_assets.ml.inference import TracedYearModel, optimise_for_inference
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.ml.pyfunc import PhotoModelConfig, PhotoPredictor, load_photo_predictor, preprocess_photo
from coin_assets.serving.app import create_app
from coin_assets.serving.model_holder import ModelHolder
from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    coin_photos,
    serving_registry_fixture,
)

SIZE = 64
NAME = "coin_serving_eager_fallback"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def coins() -> list[tuple[bytes, bytes]]:
    return [coin_photos(1900 + 13 * k, seed=k, size=(160, 120)) for k in range(8)]


def reader_model(reader: str, coin_batch: np.ndarray) -> CoinYearRegressor:
    """An untrained resnet18 reader (an untrained mobilenet's features hardly depend on the photo) whose
    orientation head is re-drawn around the coins' mean features, so that each coin is turned back by its
    own angle, and whose unreadable threshold is the median posterior peak on ``coin_batch``, so that both
    sides of the ``torch.where`` on the unreadable flag are taken."""
    torch.manual_seed(3)
    model = CoinYearRegressor(backbone="resnet18", reader=reader).eval()
    pairs = torch.from_numpy(coin_batch)
    with torch.no_grad():
        if reader == "oriented":
            mean_front = model.encode(pairs)[:, :model.feature_dim].mean(0)
            weight = torch.randn(model.orientation_head.weight.shape) * 5
            model.orientation_head.weight.copy_(weight)
            model.orientation_head.bias.copy_(-weight @ mean_front)
        peaks = model.read(pairs)["confidence"]
    model.min_confidence.fill_(float(peaks.median()))
    return model


@pytest.mark.parametrize("reader", ["oriented", "pooled"])
def test_optimised_predictor_answers_as_eager_at_several_batch_sizes(reader, coins):
    config = PhotoModelConfig(image_size=SIZE)
    coin_batch = np.stack([np.stack([preprocess_photo(f, SIZE), preprocess_photo(b, SIZE)]) for f, b in coins])
    eager = PhotoPredictor(reader_model(reader, coin_batch), config)
    fast = eager.optimised(coins[:2], check_batch_sizes=(1, 3, 8))
    assert fast.inference["optimised"] is True, fast.inference
    assert isinstance(fast.module, TracedYearModel) and fast.config is config
    assert fast.inference["checked_batch_sizes"] == [1, 3, 8]

    if reader == "oriented":  # the angle the front is turned back by depends on the photo
        with torch.no_grad():
            angles = eager.module.forward_heads(torch.from_numpy(coin_batch))["angle"]
        assert len(set(np.round(angles.numpy(), 3))) > 1
    random_pairs = np.random.default_rng(0).standard_normal((8, 2, 3, SIZE, SIZE)).astype(np.float32)
    flags = []
    for n in (1, 3, 5, 8):  # 5: a batch size the checks did not run
        for batch in (coin_batch[:n], random_pairs[:n]):
            want, got = eager.predict_arrays(batch), fast.predict_arrays(batch)
            np.testing.assert_allclose(got["year"], want["year"], atol=1e-3, rtol=1e-5)
            np.testing.assert_allclose(got["sigma"], want["sigma"], atol=1e-3, rtol=1e-5)
            np.testing.assert_array_equal(got["unreadable"], want["unreadable"])
            flags.extend(want["unreadable"])
    assert 0 < sum(flags) < len(flags)  # both readable and unreadable coins were compared

    fronts, backs = [c[0] for c in coins[:3]], [c[1] for c in coins[:3]]
    a, b = eager.predict_photos(fronts, backs), fast.predict_photos(fronts, backs)
    np.testing.assert_allclose(b[["year", "sigma", "lower_90", "upper_90"]].to_numpy(),
                               a[["year", "sigma", "lower_90", "upper_90"]].to_numpy(), atol=1e-3, rtol=1e-5)
    assert list(b["needs_review"]) == list(a["needs_review"])


class NumpyOutputs(torch.nn.Module):
    """A year model whose predict_year answers numpy arrays: it predicts, but it cannot be traced."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def predict_year(self, pairs):
        return {k: v.numpy() for k, v in self.inner.predict_year(pairs).items()}


class BatchOfTwoBranch(torch.nn.Module):
    """A Python branch on the batch size: the trace (made on a batch of 2) keeps the batch-of-2 branch."""

    def forward(self, pairs):
        year = pairs.flatten(1).mean(1) + 1990.0
        if pairs.shape[0] == 2:
            year = year + 1.0
        return torch.stack([year, torch.ones_like(year)], 1)


def test_an_untraceable_module_or_a_trace_that_fixed_a_branch_stays_eager():
    torch.manual_seed(0)
    untraceable = NumpyOutputs(CoinYearRegressor(backbone="mobilenet_v3_small").eval())
    result = optimise_for_inference(untraceable, SIZE, check_batch_sizes=(1, 2))
    assert not result.optimised and result.module is untraceable
    assert result.detail.startswith("tracing failed"), result.detail

    branchy = BatchOfTwoBranch().eval()
    result = optimise_for_inference(branchy, SIZE, check_batch_sizes=(1, 2, 3))
    assert not result.optimised and result.module is branchy
    assert "differ from eager at batch size 1" in result.detail and result.max_abs_diff == pytest.approx(1.0)
    # the eager module still answers, through the predictor
    predictor = PhotoPredictor(branchy, PhotoModelConfig(image_size=SIZE)).optimised(check_batch_sizes=(1, 2))
    assert predictor.inference["optimised"] is False and predictor.module is branchy
    out = predictor.predict_arrays(np.zeros((1, 2, 3, SIZE, SIZE), np.float32))
    assert out["year"][0] == pytest.approx(1990.0)


def metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_the_api_serves_a_model_that_cannot_be_optimised_eagerly(serving_registry, tmp_path):
    """The same version, loaded by a loader that hands an untraceable module: /health, /metadata and
    /metrics say the module is eager and why, and /predict answers."""
    reg = serving_registry
    (version,) = reg.model_copy(NAME, reg.base[:1])
    reg.promote(version, NAME)

    def untraceable_loader(source: str) -> PhotoPredictor:
        predictor = load_photo_predictor(source)
        return PhotoPredictor(NumpyOutputs(predictor.module), predictor.config)

    settings = reg.settings(tmp_path, NAME)
    with TestClient(create_app(settings, ModelHolder(settings, loader=untraceable_loader))) as client:
        health = client.get("/health").json()
        assert health["status"] == "ready" and health["model_version"] == version and health["optimised"] is False
        inference = client.get("/metadata").json()["inference"]
        assert inference["optimised"] is False and inference["detail"].startswith("tracing failed")
        front, back = coin_photos(1950, seed=9)
        r = client.post("/predict", files={"front": ("f.jpg", front), "back": ("b.jpg", back)})
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == version
        metrics = client.get("/metrics").text
        assert metric(metrics, "coin_serving_model_optimised") == 0.0
