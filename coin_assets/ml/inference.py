"""An inference-optimised copy of a loaded year model: TorchScript trace, freeze, optimize_for_inference.

:func:`optimise_for_inference` traces the module's ``predict_year`` (year, sigma, unreadable) on an
example batch, freezes it (parameters and buffers become constants) and lets
``torch.jit.optimize_for_inference`` fold batch norms into convolutions and pick the CPU kernels.
Measured by the lead (resnet18, oriented reader, 128 px, 1 thread): per pair, eager 22.8 → 18.1 ms at
batch 1 and 16.7 → 11.8 ms at batch 8, same outputs.

A trace records one run's operations: Python branches are fixed to the ones the example took and a shape
read as a plain number becomes a constant. So the traced module is only accepted when it matches the eager
module at every batch size of ``check_batch_sizes``, on random inputs mixed with the given example pairs (year
and sigma within ``atol + rtol · |eager|``, the unreadable flag equal). When tracing raises or an output
differs, the eager module is kept and :attr:`InferenceModule.detail` says why: a model that cannot be
optimised still serves, only slower.

TorchScript is deprecated in favour of ``torch.compile`` / ``torch.export`` (the installed torch warns), but it still
works, needs no C++ compiler at load time and loads in about a second; the checks above fall back to the
eager module the day it stops working.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CHECK_BATCH_SIZES = (1, 3, 8)
YEAR_ATOL = 1e-3  # years
YEAR_RTOL = 1e-5


@dataclass(frozen=True)
class InferenceModule:
    """The module to predict with (``predict_year(pairs)`` → year, sigma, unreadable), and how it was made."""

    module: Any
    optimised: bool
    detail: str  # the checks it passed, or why the eager module is kept
    checked_batch_sizes: tuple[int, ...] = ()
    max_abs_diff: float | None = None  # largest |optimised - eager| over year and sigma in the checks
    seconds: float = 0.0  # time spent tracing and checking

    def summary(self) -> dict:
        return {"optimised": self.optimised, "method": "torchscript trace+freeze+optimize_for_inference"
                if self.optimised else "eager", "detail": self.detail,
                "checked_batch_sizes": list(self.checked_batch_sizes), "max_abs_diff": self.max_abs_diff,
                "seconds": round(self.seconds, 3)}


def _year_outputs_module(module):
    import torch
    from torch import nn

    class YearOutputs(nn.Module):
        """(year, sigma, unreadable) as a tuple of tensors, what a trace can return: the module's
        ``predict_year``, or its [B, 2] forward for a model without one."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pairs):
            if hasattr(self.inner, "predict_year"):
                out = self.inner.predict_year(pairs)
                year = out["year"]
                unreadable = out.get("unreadable")
                if unreadable is None:
                    unreadable = torch.zeros_like(year, dtype=torch.bool)
                return year, out["sigma"], unreadable
            raw = self.inner(pairs).float()
            return raw[:, 0], raw[:, 1], torch.zeros_like(raw[:, 0], dtype=torch.bool)

    return YearOutputs(module).eval()


class TracedYearModel:
    """``predict_year`` over the frozen TorchScript module: the interface PhotoPredictor calls."""

    def __init__(self, scripted):
        self.scripted = scripted

    def eval(self):
        return self

    def predict_year(self, pairs) -> dict:
        year, sigma, unreadable = self.scripted(pairs)
        return {"year": year, "sigma": sigma, "unreadable": unreadable}


def _check_batches(image_size: int, batch_sizes: Sequence[int], examples, seed: int) -> list:
    """One batch per size: standard-normal pairs, with the examples (when given) in every other row
    from the first, so a batch of one is an example and every larger batch mixes both."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    batches = []
    for n in batch_sizes:
        batch = torch.randn(n, 2, 3, image_size, image_size, generator=gen)
        if examples is not None and len(examples):
            rows = torch.arange(0, n, 2)
            batch[rows] = examples[torch.arange(len(rows)) % len(examples)]
        batches.append(batch)
    return batches


def _max_differences(expected, got) -> tuple[float, float, bool]:
    """(largest |optimised - eager| over year and sigma, the same as a multiple of the allowed difference,
    unreadable flags equal); a NaN on one side only counts as an infinite difference."""
    worst_abs, worst_ratio = 0.0, 0.0
    for ref, new in zip(expected[:2], got[:2], strict=True):
        ref, new = ref.double().cpu().numpy(), new.double().cpu().numpy()
        if ref.shape != new.shape:
            return float("inf"), float("inf"), False
        diff = np.abs(new - ref)
        diff = np.where(np.isnan(ref) & np.isnan(new), 0.0, np.nan_to_num(diff, nan=np.inf))  # NaN on one side
        worst_abs = max(worst_abs, float(np.max(diff, initial=0.0)))
        allowed = YEAR_ATOL + YEAR_RTOL * np.abs(np.nan_to_num(ref))
        worst_ratio = max(worst_ratio, float(np.max(diff / allowed, initial=0.0)))
    same_flags = bool(np.array_equal(expected[2].cpu().numpy(), got[2].cpu().numpy()))
    return worst_abs, worst_ratio, same_flags


def optimise_for_inference(module, image_size: int, example_pairs=None,
                           check_batch_sizes: Sequence[int] = CHECK_BATCH_SIZES, seed: int = 0) -> InferenceModule:
    """``module`` (a year model in eval mode: ``predict_year`` or a [B, 2] forward) → an
    :class:`InferenceModule`: the traced, frozen and optimised module when it matches the eager one at
    every batch size of ``check_batch_sizes`` (on random pairs mixed with ``example_pairs``, normalised
    [N, 2, 3, S, S] arrays or tensors such as preprocessed generated coins), else the eager module with
    the reason. Never raises for a module that cannot be traced."""
    import torch

    started = time.perf_counter()
    module = module.eval() if hasattr(module, "eval") else module
    sizes = tuple(int(n) for n in check_batch_sizes)

    def eager(reason: str, diff: float | None = None) -> InferenceModule:
        log.warning("serving the eager module: %s", reason)
        return InferenceModule(module, False, reason, sizes, diff, time.perf_counter() - started)

    try:
        examples = None
        if example_pairs is not None and len(example_pairs):
            examples = torch.as_tensor(np.ascontiguousarray(example_pairs, dtype=np.float32))
        device = next((p.device for p in module.parameters()), torch.device("cpu")) \
            if hasattr(module, "parameters") else torch.device("cpu")
        wrapped = _year_outputs_module(module)
        batches = [b.to(device) for b in _check_batches(image_size, sizes, examples, seed)]
        # a batch of 2: a batch of 1 invites size-1 special cases into the trace
        trace_input = torch.randn(2, 2, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed + 1))
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarning (a value read as a constant) is what the checks below catch when it matters;
            # the FutureWarning is TorchScript's deprecation notice (see the module docstring)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(wrapped, trace_input.to(device), check_trace=False)
            scripted = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception as err:  # untraceable module (data-dependent Python, unsupported ops...)
        return eager(f"tracing failed: {type(err).__name__}: {err}".strip()[:500])
    worst_abs, worst_ratio = 0.0, 0.0
    try:
        with torch.no_grad():
            for batch in batches:
                expected, got = wrapped(batch), scripted(batch)
                diff_abs, ratio, same_flags = _max_differences(expected, got)
                worst_abs, worst_ratio = max(worst_abs, diff_abs), max(worst_ratio, ratio)
                if ratio > 1.0 or not same_flags:
                    return eager(f"optimised outputs differ from eager at batch size {len(batch)}: max |diff| "
                                 f"{diff_abs:.3g} (tolerance {YEAR_ATOL} + {YEAR_RTOL}·|eager|), unreadable flags "
                                 f"{'equal' if same_flags else 'differ'}", diff_abs)
    except Exception as err:  # e.g. a shape fixed at trace time
        return eager(f"optimised module failed at a checked batch size: {type(err).__name__}: {err}"[:500])
    detail = (f"equal to eager within {YEAR_ATOL} + {YEAR_RTOL}·|eager| years at batch sizes {list(sizes)} "
              f"on random pairs{' and example pairs' if examples is not None else ''}")
    return InferenceModule(TracedYearModel(scripted), True, detail, sizes, worst_abs, time.perf_counter() - started)
