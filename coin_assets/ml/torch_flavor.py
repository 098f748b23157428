"""Load a model saved with MLflow's ``pytorch`` flavour as a torch module that code written for eager
models can use. Both the registry's loading (:mod:`coin_assets.ml.model_serialization`: older tensor-input
versions) and the raw-photo pyfunc (:mod:`coin_assets.ml.pyfunc`: the torch module it carries as an
artifact) load through here.

MLflow 3 behaviour this works around: ``mlflow.pytorch.load_model`` of a pt2 (``torch.export``) model
returns a ``torch.fx.GraphModule`` frozen in eval mode whose ``.eval()``/``.train()`` raise
``NotImplementedError``; it is wrapped so code written for eager modules (``model.to(dev).eval()``) works.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep the import cheap: mlflow and torch load lazily
    import torch


def load_pytorch_module(model_uri: str) -> torch.nn.Module:
    """``mlflow.pytorch.load_model`` on CPU (any URI or local path MLflow takes), in eval mode.

    A pt2 (``torch.export``) model loads as a GraphModule frozen in eval mode whose ``.eval()`` and
    ``.train()`` raise NotImplementedError; it is wrapped so that ``.eval()``/``.train(mode)`` are no-ops
    (the graph always runs as exported: in eval mode) and ``.to(device)`` still moves the weights.
    A pickled eager model is returned as loaded (in eval mode).
    """
    import mlflow.pytorch

    model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    if "train" in vars(model) or "eval" in vars(model):  # ExportedProgram.module() patches these per instance
        return _exported_module_class()(model)
    return model.eval()


@functools.cache
def _exported_module_class():
    import torch

    class ExportedCoinModel(torch.nn.Module):
        """An exported (eval-mode) coin model behind an nn.Module whose train()/eval() do not raise."""

        def __init__(self, exported: torch.nn.Module):
            super().__init__()
            self.exported = exported
            self.training = False

        def forward(self, pairs):
            return self.exported(pairs)

        def train(self, mode: bool = True):
            self.training = bool(mode)  # the exported graph is fixed in eval mode either way
            return self

    return ExportedCoinModel
