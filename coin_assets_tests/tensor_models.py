"""Tensor-input coin models as versions registered before the raw-photo pyfunc existed
(``mlflow.pytorch``, input [B, 2, 3, S, S]): tests use them for the registry lifecycle, the sanity
check and the migration to raw photos. The pipeline itself logs raw-photo pyfuncs only
(coin_assets.ml.pyfunc.log_photo_model)."""

from __future__ import annotations

import copy

import numpy as np

from coin_assets.ml.model_serialization import ARTIFACT_NAME, as_input_array


def log_coin_model(model, input_example: np.ndarray, registered_model_name: str | None = None, *,
                   serialization_format: str = "pt2"):
    """Inside an active MLflow run: log an eval-mode CPU copy of the model (the caller's is left
    untouched) with a signature and input example, registered as a new version when
    registered_model_name is given. A batch-1 example is repeated to batch 2 so an exported
    (``torch.export``, "pt2") batch dimension stays dynamic; "pickle" logs the eager module."""
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    if mlflow.active_run() is None:
        raise RuntimeError("log_coin_model must be called inside an active MLflow run (mlflow.start_run())")
    example = as_input_array(input_example)
    if example.shape[0] == 1:
        example = np.concatenate([example, example], axis=0)
    export = copy.deepcopy(model).to("cpu").eval()
    with torch.no_grad():
        output = np.asarray(export(torch.from_numpy(example)).detach().cpu().numpy(), dtype=np.float32)
    if output.shape != (example.shape[0], 2):
        raise ValueError(f"the model must return [B, 2] (year, sigma); got {tuple(output.shape)} for input {example.shape}")
    return mlflow.pytorch.log_model(
        export, name=ARTIFACT_NAME, signature=infer_signature(example, output), input_example=example,
        registered_model_name=registered_model_name, pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
        serialization_format=serialization_format,
    )
