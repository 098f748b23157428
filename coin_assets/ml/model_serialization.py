"""Model serialization: load a logged coin model back as a torch module, and check that a logged
model loads through ``mlflow.pyfunc`` and predicts sanely (plain MLflow, no Dagster).

Models are logged as raw-photo pyfuncs by ``coin_assets.ml.pyfunc.log_photo_model``; versions
registered before that are tensor-input ``mlflow.pytorch`` models, which still load here.

Notes on MLflow 3 behaviour: a pt2 (``torch.export``) model loads frozen in eval mode and is wrapped
(:mod:`coin_assets.ml.torch_flavor`); ``torch.export`` specialises a size-1 dimension to a constant, so
such a model was logged with a batch-2 input example (it accepts any batch size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from coin_assets.core.uploads import YEAR_MAX_PLAUSIBLE, YEAR_MIN
from coin_assets.ml.pyfunc import load_photo_predictor
from coin_assets.ml.torch_flavor import load_pytorch_module

if TYPE_CHECKING:  # keep the import cheap: mlflow and torch load lazily
    import torch

ARTIFACT_NAME = "model"


def as_input_array(input_example) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(input_example, dtype=np.float32))
    if array.ndim != 5 or array.shape[1:3] != (2, 3) or array.shape[0] < 1:
        raise ValueError(f"input_example must be a float32 array [B, 2, 3, H, W] with B >= 1, got shape {array.shape}")
    return array


def load_torch_model(model_uri: str) -> torch.nn.Module:
    """The torch module of a registered version, on CPU, usable by code written for eager models: a
    raw-photo pyfunc's packaged module, or an older tensor-input version's ``mlflow.pytorch`` model
    (loaded by :func:`coin_assets.ml.torch_flavor.load_pytorch_module`, which wraps pt2 exports)."""
    from mlflow.models import get_model_info

    if "pytorch" not in get_model_info(model_uri).flavors:  # a raw-photo pyfunc: its packaged torch module
        return load_photo_predictor(model_uri).module
    return load_pytorch_module(model_uri)


def _photo_model_problems(loaded, year_range: tuple[int, int]) -> list[str]:
    """Smoke-predict a raw-photo pyfunc on its own logged input example (real photos)."""
    example = loaded.input_example
    if example is None:
        return ["the logged raw-photo model has no input example"]
    try:
        output = loaded.predict(example)
    except Exception as err:  # noqa: BLE001
        return [f"smoke prediction failed: {type(err).__name__}: {str(err)[:500]}"]
    problems = []
    for column in ("year", "sigma", "lower_90", "upper_90"):
        if column not in output:
            problems.append(f"output has no {column!r} column")
    if problems:
        return problems
    if output["error"].astype(str).str.len().gt(0).any():
        problems.append(f"the input example was not scored: {output['error'].iloc[0]}")
    years, sigmas = output["year"].to_numpy(float), output["sigma"].to_numpy(float)
    if not (np.isfinite(years).all() and np.isfinite(sigmas).all()):
        problems.append("non-finite year or sigma")
    elif (sigmas <= 0).any():
        problems.append("sigma <= 0")
    elif ((years < year_range[0]) | (years > year_range[1])).any():
        problems.append(f"year outside {year_range}: {years.tolist()}")
    return problems


def sanity_check(model_uri: str, input_example: np.ndarray, year_range: tuple[int, int] = (YEAR_MIN, YEAR_MAX_PLAUSIBLE)) -> list[str]:
    """Load through mlflow.pyfunc, check it has a signature, smoke-predict input_example: outputs finite,
    shape [B,2], sigma>0, years within year_range. Returns a list of problems (empty = sane)."""
    import mlflow.pyfunc

    try:
        example = as_input_array(input_example)
    except ValueError as err:
        return [f"bad smoke input: {err}"]
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except Exception as err:  # noqa: BLE001 - any failure to load is a problem to report
        return [f"cannot load {model_uri} through mlflow.pyfunc: {type(err).__name__}: {err}"]

    problems = []
    signature = loaded.metadata.signature
    if signature is not None and signature.inputs is not None and {"front", "back"} <= set(signature.inputs.input_names()):
        return _photo_model_problems(loaded, year_range)
    if signature is None or signature.inputs is None:
        problems.append("the logged model has no signature")
    elif signature.inputs.is_tensor_spec():
        spec = signature.inputs.inputs[0].shape
        if len(spec) != example.ndim or any(s not in (-1, e) for s, e in zip(spec, example.shape, strict=False)):
            problems.append(f"signature input shape {tuple(spec)} does not accept the smoke input {example.shape}")
    try:
        output = np.asarray(loaded.predict(example), dtype=np.float64)
    except Exception as err:  # noqa: BLE001
        problems.append(f"smoke prediction failed: {type(err).__name__}: {str(err)[:500]}")
        return problems

    batch = example.shape[0]
    if output.shape != (batch, 2):
        problems.append(f"output shape {output.shape}, expected ({batch}, 2) = (year, sigma)")
        return problems
    finite = np.isfinite(output)
    if not finite.all():
        problems.append(f"non-finite outputs: {int((~finite).sum())} of {output.size} values are NaN or inf")
    years, sigmas = output[:, 0], output[:, 1]
    low, high = year_range
    bad_years = finite[:, 0] & ((years < low) | (years > high))
    if bad_years.any():
        problems.append(f"predicted years {np.round(years[bad_years], 1).tolist()} outside {low}-{high}")
    bad_sigmas = finite[:, 1] & (sigmas <= 0)
    if bad_sigmas.any():
        problems.append(f"non-positive sigma {np.round(sigmas[bad_sigmas], 4).tolist()}")
    return problems
