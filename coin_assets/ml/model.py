"""A two-photo mint-year reader: torchvision backbone(s), fused features, a Gaussian head and four
digit heads, combined into one year and its interval.

Input  [B, 2, 3, H, W] (side 0 = front, 1 = back), normalised with ImageNet mean/std.
Output [B, 2]: column 0 = predicted year, column 1 = its standard deviation (years, > 0), already
scaled by the conformal calibration, so that ``year ± Z_90 · sigma`` is the calibrated 90 % interval.

How the heads combine (:meth:`CoinYearRegressor.posterior`): every year ``y`` of the plausible range
[``year_min``, ``year_max``] gets ``log p(y) = Σ_i log p_i(digit_i(y)) + log N(y; mu, s)`` (a product of
experts: the digit heads read, the Gaussian keeps the reading near what the whole coin suggests). The
year is the posterior's mode; sigma is its standard deviation (at least half a year), times
``interval_scale`` (the conformal quantile over Z_90, set by :mod:`coin_assets.ml.calibration`). A coin
whose posterior peak is below ``min_confidence`` is *unreadable*: its sigma is raised to at least
``UNREADABLE_SIGMA`` years, so its interval is wide and it goes to the review queue.

Two digit readers (``reader``):

* ``pooled``: the four digit heads on the globally pooled backbone features. Measured: it does not learn to
  read (at 64 px mobilenet_v3_small ends on a 2×2 map, so the digits' order is gone before the heads, and
  the digits lie at any angle): generator test MAE 20 vs 19.3 for the mean, 0 % exact.
* ``oriented``: an orientation head (36 bins of 10°) on the front's pooled backbone features estimates the
  coin's rotation; the front is turned back by it inside the model (``affine_grid``/``grid_sample``, so
  the pickled model and the pyfunc need nothing else) and the band below the centre, where the year lies
  on an upright coin, is read by a small CNN (:class:`DigitReader`) that keeps the digits' left-to-right
  layout. Trained on generated coins whose rotation is known (the orientation head's target; the reader
  then reads fronts turned back by the true angle ± 10°); on people's coins the estimate is used. In eval mode,
  without given angles, the front is read at the estimate plus each of ``reader_offsets`` (default
  ``READER_OFFSETS_DEG``: 0 and ± 7°, within the ± 10° the reader was trained on) and the four digits'
  log-probabilities are averaged before the posterior (test-time augmentation over the angle; training reads one
  angle; figures in the README). The year stays the posterior's mode: its median (which minimises the expected
  absolute error) did not lower the MAE of a trained model and lowered the share read exactly.

The year scale (``year_center``, ``year_scale``), the range, the calibration and the threshold are
buffers: they travel with the state_dict and the pickled model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

log = logging.getLogger(__name__)

BACKBONES = ("resnet18", "mobilenet_v3_small", "mobilenet_v3_large")
MODES = ("shared", "dual")
FEATURE_DIMS = {"resnet18": 512, "mobilenet_v3_small": 576, "mobilenet_v3_large": 960}

# log-variance bounds in normalised units: with year_scale 20, sigma stays within ~0.2 .. ~400 years
LOG_VAR_MIN, LOG_VAR_MAX = -7.0, 6.0
DEFAULT_DROPOUT = 0.1
BN_MOMENTUM = 0.1  # PyTorch's default; torchvision's MobileNetV3 sets 0.01
# Measured (600 synth coins, resnet18 at 128 px, 12 epochs, seed 0): NLL alone, test MAE 2.7 years;
# NLL + 0.2 * L1 on mu, 3.7 years. The L1 term is kept as an option, off by default.
DEFAULT_L1_WEIGHT = 0.0
YEAR_MIN, YEAR_MAX = 1900, 2039  # the plausible range the digit heads decode over
DIGITS = 4
UNREADABLE_SIGMA = 40.0
READERS = ("pooled", "oriented")
ORIENT_BINS = 36  # the orientation head's classes: 10° each
DEFAULT_MIN_CONFIDENCE = 0.35
# the oriented reader's test-time angles around the estimate (degrees): a grid over the training jitter (± 10°)
READER_OFFSETS_DEG = (0.0, -7.0, 7.0)


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """A torchvision classifier (weights=None) with its classification layer replaced by Identity,
    so that it returns the pooled feature vector. The module keeps torchvision's parameter names,
    so a torchvision state_dict loads into it directly."""
    if name == "resnet18":
        net = models.resnet18(weights=None)
        net.fc = nn.Identity()
    elif name == "mobilenet_v3_small":
        net = models.mobilenet_v3_small(weights=None)
        net.classifier = nn.Identity()
    elif name == "mobilenet_v3_large":
        net = models.mobilenet_v3_large(weights=None)
        net.classifier = nn.Identity()
    else:
        raise ValueError(f"unknown backbone {name!r}: expected one of {BACKBONES}")
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            # torchvision's MobileNetV3 uses momentum 0.01 (tuned for ImageNet's long runs): its running
            # statistics would lag far behind on runs of a few hundred steps, making eval-mode outputs useless
            module.momentum = BN_MOMENTUM
    return net, FEATURE_DIMS[name]


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def upright_band(images: Tensor, angle_deg: Tensor, rows: int, cols: int,
                 band: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """Turn each image [B, C, H, W] back by its angle (degrees, counter-clockwise as drawn, the generator's
    ``Style.rotation``) and sample the band ``band`` (vertical extent in [-1, 1] image units, +1 = bottom)
    of the upright coin, full width, as [B, C, rows, cols]. Bilinear and differentiable (affine_grid)."""
    t = torch.deg2rad(angle_deg.to(images.dtype))
    c, s = torch.cos(t), torch.sin(t)
    half, mid = (band[1] - band[0]) / 2, (band[1] + band[0]) / 2
    theta = torch.stack([torch.stack([c, s * half, s * mid], 1), torch.stack([-s, c * half, c * mid], 1)], 1)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], rows, cols], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def angle_from_logits(logits: Tensor) -> Tensor:
    """[B, ORIENT_BINS] → [B] degrees in [0, 360): the circular mean of the probabilities within two bins of the
    most likely bin (unbiased for a symmetric peak; a second, opposite peak does not pull it)."""
    k_bins = logits.shape[1]
    width = 360.0 / k_bins
    p = torch.softmax(logits.float(), 1)
    k = p.argmax(1)
    offsets = torch.arange(-2, 3, device=logits.device)
    w = p.gather(1, (k[:, None] + offsets[None]) % k_bins)
    rad = torch.deg2rad(offsets.float() * width)
    shift = torch.rad2deg(torch.atan2((w * torch.sin(rad)).sum(1), (w * torch.cos(rad)).sum(1)))
    return (k.float() * width + shift) % 360.0


def orientation_targets(angle_deg: Tensor, bins: int = ORIENT_BINS) -> Tensor:
    """[B] degrees → [B, bins] soft targets (a Gaussian of one bin's width around the angle, on the circle)."""
    centres = torch.arange(bins, device=angle_deg.device, dtype=torch.float32) * (360.0 / bins)
    d = (angle_deg.float()[:, None] - centres[None]) % 360.0
    d = torch.minimum(d, 360.0 - d)
    t = torch.exp(-0.5 * (d / (360.0 / bins)).square())
    return t / t.sum(1, keepdim=True)


class DigitReader(nn.Module):
    """Reads the four digits from the front once it is turned upright: the band below the centre, where the
    year lies on an upright coin (across the field or along the bottom rim), sampled at the input's own
    resolution, in grey standardised per coin (relief digits differ from the field by a little shading whatever
    the metal: measured, a reader on RGB did not start learning in 350 steps, on the standardised grey band it
    did), through a small CNN that keeps the horizontal layout (digit order) and collapses the height (the
    digits' height varies with the placement), then four 10-way classifiers on the flattened row."""

    def __init__(self, width: int = 32, band_rows: int = 32, band_cols: int = 64, dropout: float = DEFAULT_DROPOUT):
        super().__init__()
        self.band_rows, self.band_cols = int(band_rows), int(band_cols)
        w = int(width)
        self.features = nn.Sequential(
            _conv(1, w), _conv(w, w), nn.MaxPool2d(2),
            _conv(w, 2 * w), _conv(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w), nn.MaxPool2d((2, 1)), _conv(4 * w, 4 * w),
            nn.AdaptiveMaxPool2d((1, self.band_cols // 4)))
        self.classify = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * (self.band_cols // 4), 256),
                                      nn.ReLU(inplace=True), nn.Linear(256, DIGITS * 10))

    def forward(self, front: Tensor, angle_deg: Tensor) -> Tensor:
        """front [B, 3, H, W] (normalised), angle [B] degrees → digit logits [B, 4, 10]."""
        band = upright_band(front, angle_deg, self.band_rows, self.band_cols).mean(1, keepdim=True)
        band = (band - band.mean((2, 3), keepdim=True)) / (band.std((2, 3), keepdim=True) + 1e-3)
        return self.classify(self.features(band)).reshape(-1, DIGITS, 10)


def _extract_state_dict(obj) -> Mapping[str, Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return inner
        return obj
    raise TypeError(f"expected a state_dict, got {type(obj).__name__}")


def _backbone_keys(state: Mapping[str, Tensor], side: int) -> dict[str, Tensor]:
    """Keys of a torchvision model, or of a saved CoinYearRegressor (``encoders.<side>.`` / ``encoders.0.``),
    with any DataParallel ``module.`` prefix removed."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for prefix in (f"encoders.{side}.", "encoders.0."):
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return dict(state)


class CoinYearRegressor(nn.Module):
    def __init__(
        self,
        backbone: str = "resnet18",
        mode: str = "shared",
        projection_dim: int | None = 128,
        year_center: float = 1987.5,
        year_scale: float = 20.0,
        weights_path: str | None = None,
        dropout: float = DEFAULT_DROPOUT,
        digit_heads: bool = True,
        year_range: tuple[int, int] = (YEAR_MIN, YEAR_MAX),
        reader: str = "pooled",
        reader_width: int = 32,
        reader_resolution: int = 64,
        reader_offsets: tuple[float, ...] = READER_OFFSETS_DEG,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}: expected one of {BACKBONES}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: expected one of {MODES}")
        if reader not in READERS:
            raise ValueError(f"unknown reader {reader!r}: expected one of {READERS}")
        if not year_scale > 0:
            raise ValueError(f"year_scale must be > 0, got {year_scale}")
        self.backbone_name = backbone
        self.mode = mode
        self.projection_dim = projection_dim
        n_encoders = 1 if mode == "shared" else 2
        encoders, feat = [], 0
        for _ in range(n_encoders):
            net, feat = build_backbone(backbone)
            encoders.append(net)
        self.encoders = nn.ModuleList(encoders)
        self.feature_dim = feat
        width = 2 * feat
        if projection_dim:
            self.projection = nn.Sequential(nn.Linear(width, projection_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
            width = projection_dim
        else:
            self.projection = nn.Dropout(dropout)
        self.head = nn.Linear(width, 2)  # (mu_normalised, log_var)
        self.reader = reader if digit_heads else "pooled"
        self.has_digit_heads = bool(digit_heads)
        # a plain attribute, not a buffer: state_dicts saved before it existed still load
        self.reader_offsets = tuple(float(o) for o in reader_offsets) or (0.0,)
        if digit_heads and self.reader == "oriented":
            # the orientation from the front's pooled features; the digits from the front turned upright
            self.orientation_head = nn.Linear(feat, ORIENT_BINS)
            self.digit_reader = DigitReader(reader_width, reader_resolution // 2, reader_resolution, dropout)
        elif digit_heads:
            # from the fused features before the projection: reading needs more than 128 numbers
            self.digit_head = nn.Sequential(nn.Linear(2 * feat, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                            nn.Linear(256, DIGITS * 10))
        lo, hi = int(year_range[0]), int(year_range[1])
        if not (1000 <= lo < hi <= 9999):
            raise ValueError(f"year_range must be two four-digit years, low < high: got {year_range}")
        years = torch.arange(lo, hi + 1)
        self.register_buffer("year_grid", years.float())
        self.register_buffer("year_digits", torch.stack([(years // 10 ** (3 - i)) % 10 for i in range(DIGITS)], 1))
        self.register_buffer("interval_scale", torch.tensor(1.0))  # conformal quantile / Z_90; 1 = uncalibrated
        self.register_buffer("min_confidence", torch.tensor(DEFAULT_MIN_CONFIDENCE))
        # start near "predict the mean, sigma = one year_scale": a calm first NLL
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("year_center", torch.tensor(float(year_center)))
        self.register_buffer("year_scale", torch.tensor(float(year_scale)))
        self.init_report: dict | None = None
        if weights_path:
            self.init_report = self.load_backbone_weights(weights_path)

    def load_backbone_weights(self, weights_path: str) -> dict:
        """Initialise every encoder from a local state_dict (strict=False). Accepts a torchvision model's
        state_dict (classifier keys are ignored) or a saved CoinYearRegressor's. Returns and logs the counts
        of loaded / missing / unexpected keys; raises if no key matched (a wrong file, not a partial one)."""
        state = _extract_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        report = {"loaded": 0, "missing": 0, "unexpected": 0}
        for side, encoder in enumerate(self.encoders):
            own = encoder.state_dict()
            wanted = _backbone_keys(state, side)
            usable = {k: v for k, v in wanted.items() if k in own and own[k].shape == v.shape}
            if not usable:
                raise ValueError(f"{weights_path}: no key matches a {self.backbone_name} backbone")
            result = encoder.load_state_dict(usable, strict=False)
            report["loaded"] += len(usable)
            report["missing"] += len(result.missing_keys)
            report["unexpected"] += len(wanted) - len(usable)
        # a saved reader (a synthetic pre-training): its heads, year scale and calibration come along
        own = self.state_dict()
        rest = {k.removeprefix("module."): v for k, v in state.items()}
        rest = {k: v for k, v in rest.items()
                if not k.startswith("encoders.") and k in own and own[k].shape == v.shape}
        if rest:
            self.load_state_dict(rest, strict=False)
        report["heads_loaded"] = len(rest)
        log.info("backbone initialised from %s: %s", weights_path, report)
        return report

    def encode(self, pairs: Tensor) -> Tensor:
        """[B, 2, 3, H, W] → [B, 2 * feature_dim] (front features, then back features)."""
        if pairs.dim() != 5 or pairs.shape[1] != 2:
            raise ValueError(f"expected pairs of shape [B, 2, 3, H, W], got {tuple(pairs.shape)}")
        b = pairs.shape[0]
        if self.mode == "shared":
            feats = self.encoders[0](pairs.flatten(0, 1))  # both sides in one batch of 2B images
            return feats.reshape(b, 2 * self.feature_dim)
        return torch.cat([self.encoders[0](pairs[:, 0]), self.encoders[1](pairs[:, 1])], dim=1)

    def forward_normalised(self, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, log_var) in normalised units, log_var clamped to [LOG_VAR_MIN, LOG_VAR_MAX]."""
        out = self.head(self.projection(self.encode(pairs)))
        return out[:, 0], out[:, 1].clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def forward_heads(self, pairs: Tensor, reader_angles: Tensor | None = None) -> dict[str, Tensor]:
        """Raw heads: ``mu``, ``log_var`` (normalised units) and ``digit_logits`` [B, 4, 10] (absent without
        digit heads); with the oriented reader also ``orient_logits`` [B, ORIENT_BINS] and ``angle`` [B], the
        angle the front was turned back by: ``reader_angles`` where given and finite (training on generated
        coins whose rotation is known), else the orientation head's estimate. In eval mode without
        ``reader_angles``, ``digit_logits`` are the digit log-probabilities averaged over the readings at
        ``angle + reader_offsets`` (a model pickled before the offsets existed reads at ``angle`` only)."""
        feats = self.encode(pairs)
        out = self.head(self.projection(feats))
        heads = {"mu": out[:, 0], "log_var": out[:, 1].clamp(LOG_VAR_MIN, LOG_VAR_MAX)}
        # getattr: a model pickled before the oriented reader existed has no ``reader`` attribute
        if self.has_digit_heads and getattr(self, "reader", "pooled") == "oriented":
            heads["orient_logits"] = self.orientation_head(feats[:, :self.feature_dim])
            angle = angle_from_logits(heads["orient_logits"].detach())
            if reader_angles is not None:
                given = reader_angles.to(angle)
                angle = torch.where(torch.isfinite(given), given, angle)
            heads["angle"] = angle
            offsets = getattr(self, "reader_offsets", (0.0,))
            if reader_angles is None and not self.training and len(offsets) > 1:
                heads["digit_logits"] = self.read_digits_around(pairs[:, 0], angle, offsets)
            else:
                heads["digit_logits"] = self.digit_reader(pairs[:, 0], angle)
        elif self.has_digit_heads:
            heads["digit_logits"] = self.digit_head(feats).reshape(-1, DIGITS, 10)
        return heads

    def read_digits_around(self, front: Tensor, angle: Tensor, offsets: tuple[float, ...]) -> Tensor:
        """front [B, 3, H, W], angle [B] → [B, 4, 10]: the mean over ``offsets`` (degrees) of the digit
        log-probabilities read at ``angle + offset`` (one reader pass per offset: measured faster on the CPU than
        one pass over a batch k times as large)."""
        logp = [F.log_softmax(self.digit_reader(front, (angle + offset) % 360.0).float(), -1) for offset in offsets]
        return torch.stack(logp).mean(0)

    def posterior(self, heads: dict[str, Tensor]) -> Tensor:
        """[B, K] probabilities over ``year_grid`` (see the module docstring)."""
        years = self.year_grid
        mean = self.year_center + self.year_scale * heads["mu"]
        sd = self.year_scale * torch.exp(0.5 * heads["log_var"])
        logp = -0.5 * ((years[None, :] - mean[:, None]) / sd[:, None]).square()
        if "digit_logits" in heads:
            digit_logp = F.log_softmax(heads["digit_logits"].float(), dim=-1)  # [B, 4, 10]
            idx = self.year_digits.T.unsqueeze(0).expand(digit_logp.shape[0], -1, -1)  # [B, 4, K]
            logp = logp + digit_logp.gather(2, idx).sum(1)
        return torch.softmax(logp, dim=1)

    def read(self, pairs: Tensor) -> dict[str, Tensor]:
        """year, sigma (calibrated, raised for unreadable coins), confidence (posterior peak), unreadable."""
        return self.read_heads(self.forward_heads(pairs))

    def read_heads(self, heads: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.has_digit_heads:
            year = self.year_center + self.year_scale * heads["mu"]
            sigma = self.year_scale * torch.exp(0.5 * heads["log_var"]) * self.interval_scale
            return {"year": year, "sigma": sigma, "confidence": torch.ones_like(year),
                    "unreadable": torch.zeros_like(year, dtype=torch.bool)}
        post = self.posterior(heads)
        peak, idx = post.max(dim=1)
        year = self.year_grid[idx]
        spread = (post * (self.year_grid[None, :] - year[:, None]).square()).sum(1).sqrt()
        sigma = torch.clamp(spread, min=0.5) * self.interval_scale
        unreadable = peak < self.min_confidence
        sigma = torch.where(unreadable, torch.clamp(sigma, min=UNREADABLE_SIGMA), sigma)
        return {"year": year, "sigma": sigma, "confidence": peak, "unreadable": unreadable}

    def predict_year(self, pairs: Tensor) -> dict[str, Tensor]:
        """What the raw-photo pyfunc asks for: year, sigma (calibrated) and the unreadable flag."""
        out = self.read(pairs)
        return {"year": out["year"], "sigma": out["sigma"], "unreadable": out["unreadable"]}

    def forward(self, pairs: Tensor) -> Tensor:
        """pairs: float tensor [B, 2, 3, H, W] (side 0 = front, 1 = back), normalised with IMAGENET mean/std.
        Returns [B, 2]: column 0 = predicted year (in years), column 1 = calibrated standard deviation in years (> 0)."""
        out = self.read(pairs)
        return torch.stack([out["year"], out["sigma"]], dim=1)


def digit_targets(years: Tensor) -> Tensor:
    """[B] years (NaN allowed) → [B, 4] digit classes, -100 (ignored by cross-entropy) where unknown."""
    known = torch.isfinite(years)
    y = torch.where(known, years, torch.zeros_like(years)).round().long()
    digits = torch.stack([(y // 10 ** (3 - i)) % 10 for i in range(DIGITS)], 1)
    return torch.where(known[:, None], digits, torch.full_like(digits, -100))


def reader_loss(model: CoinYearRegressor, heads: dict[str, Tensor], years: Tensor, digit_weight: float = 1.0,
                angles: Tensor | None = None, orientation_weight: float = 1.0) -> Tensor:
    """Gaussian NLL of the regression head plus the mean cross-entropy of the four digit heads, plus (where the
    front's true rotation ``angles`` is known, NaN elsewhere) the orientation head's cross-entropy against a
    soft target around it."""
    mean = model.year_center + model.year_scale * heads["mu"]
    sigma = model.year_scale * torch.exp(0.5 * heads["log_var"])
    loss = gaussian_nll(torch.stack([mean, sigma], 1), years, model.year_center, model.year_scale)
    if "digit_logits" in heads and digit_weight:
        targets = digit_targets(years.to(heads["digit_logits"].device))
        if bool((targets >= 0).any()):
            loss = loss + digit_weight * F.cross_entropy(heads["digit_logits"].reshape(-1, 10).float(),
                                                         targets.reshape(-1), ignore_index=-100)
    if "orient_logits" in heads and angles is not None and orientation_weight:
        angles = angles.to(heads["orient_logits"].device)
        known = torch.isfinite(angles)
        if bool(known.any()):
            logp = F.log_softmax(heads["orient_logits"][known].float(), 1)
            loss = loss - orientation_weight * (orientation_targets(angles[known]) * logp).sum(1).mean()
    return loss


def gaussian_nll(
    pred: Tensor,
    target_years: Tensor,
    year_center: float | Tensor,
    year_scale: float | Tensor,
    *,
    l1_weight: float = DEFAULT_L1_WEIGHT,
) -> Tensor:
    """Mean Gaussian negative log-likelihood (constant term dropped) in normalised units:
    0.5 * (log var + (y - mu)^2 / var), with mu = (year - center) / scale, var = (sigma / scale)^2,
    plus ``l1_weight * |y - mu|``. Targets that are NaN (unknown years) are ignored; a batch without
    any known target gives 0 (with a graph, so backward still works)."""
    year_center = torch.as_tensor(year_center, dtype=pred.dtype, device=pred.device)
    year_scale = torch.as_tensor(year_scale, dtype=pred.dtype, device=pred.device)
    target = target_years.to(device=pred.device, dtype=pred.dtype)
    known = torch.isfinite(target)
    mu = (pred[:, 0] - year_center) / year_scale
    var = (pred[:, 1] / year_scale).square()
    y = torch.where(known, (target - year_center) / year_scale, mu.detach())
    if not bool(known.any()):
        return pred.sum() * 0.0
    loss = F.gaussian_nll_loss(mu[known], y[known], var[known], full=False, eps=1e-8, reduction="mean")
    if l1_weight:
        loss = loss + l1_weight * (mu[known] - y[known]).abs().mean()
    return loss
