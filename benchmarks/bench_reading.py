"""Reading the year through the product: generated photos sent to the running API's ``POST /predict``, as a
person sends them, beside the OCR a person could pick instead (RapidOCR and Tesseract) on the same photos.

    make headless                                  # a fresh instance promotes its first model
    python benchmarks/bench_reading.py             # starts the API on that data root, sends the photos
    python benchmarks/bench_reading.py --api http://127.0.0.1:8000 --per-placement 20 --no-baselines

Sets (each photo new to every model: seeds no training or suite uses):

* ``generator``: :mod:`coin_assets.synth.varied` photos, ``--per-placement`` coins of each placement;
* ``holdout``: the held-out renderer's photos (other typefaces, tablecloths, a second light, a colour cast);
* ``struck``: :mod:`coin_assets.synth.struck` photographs of struck coins (relief lit by one or two lights,
  metal, wear, tilt, other dates and numbers on the face, years split by the design);
* ``struck_holdout``: the same renderer's held-out look (fonts, lights and backgrounds training never sees);
* ``no_year``: coins without a year (letters or nothing in its place, a face worn smooth), drawn and struck;
* ``no_coin``: table tops, a banknote with a date, a bottle cap;
* ``two_faces``: both faces of a struck coin side by side in one photo (the answer says ``coins: 2``).

Per set and placement: exact (answered, not flagged, right), MAE of the answers given, confident wrong
(answered, not flagged, wrong), flagged (unreadable or sent to review), no coin found in the front (read whole,
sent to review), 90 % interval coverage over all coins;
RapidOCR's and Tesseract's exact and wrong on the same fronts (four rotations plus the unwrapped rim, the
heaviest four-digit vote in 1900-2039; no vote is an abstention).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BENCH_SEED = 424242
YEAR_RUN = re.compile(r"(?<![0-9])(19[0-9]{2}|20[0-3][0-9])(?![0-9])")


@dataclass
class Coin:
    set: str
    placement: str
    year: int | None
    front: bytes
    back: bytes


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_coins(per_placement: int, no_year: int, no_coin: int, sets: tuple[str, ...] = ("generator", "holdout",
               "struck", "struck_holdout"), struck_size: tuple[int, int] = (640, 480),
               camera_sizes: bool = False, small_sizes: bool = False) -> list[Coin]:
    """The photos to send; ``struck_size``: the photographic coins' photo size (a phone's photo is larger).
    ``camera_sizes``: every coin with a year at a size drawn as the training generator draws its full-size
    photos (:func:`coin_assets.synth.photos.photo_size_for`: long side 800..2000, one in twenty 4000 × 3000).
    ``small_sizes``: the same shapes with the long side 256..480 (a small or old photo: the coin 150-400 px
    across)."""
    from coin_assets.synth import holdout as h
    from coin_assets.synth import struck as s
    from coin_assets.synth import varied as v
    from coin_assets.synth.photos import photo_size_for

    def drawn_size(name: str, k: int, i: int, fixed: tuple[int, int]) -> tuple[int, int]:
        rng = random.Random(f"bench-camera:{BENCH_SEED}:{name}:{k}:{i}")
        if small_sizes:
            return photo_size_for(rng, max_side=random.Random(f"bench-small:{BENCH_SEED}:{name}:{k}:{i}").randint(256, 480))
        return photo_size_for(rng) if camera_sizes else fixed

    coins = []
    for k, placement in enumerate(s.STRUCK_PLACEMENTS):
        for i in range(per_placement):
            for name, holdout in (("struck", False), ("struck_holdout", True)):
                if name not in sets:
                    continue
                year_rng, look_rng = s.struck_rngs(BENCH_SEED, k * 100_000 + i, holdout=holdout)
                year = s.sample_struck_year(year_rng)
                size = drawn_size(name, k, i, struck_size)
                front, back, _ = s.render_struck_photo_pair(year, look_rng, placement=placement, holdout=holdout,
                                                            photo_size=size)
                coins.append(Coin(name, placement, year, jpeg(front.image), jpeg(back.image)))
    for k, placement in enumerate(v.PLACEMENTS):
        for i in range(per_placement if {"generator", "holdout"} & set(sets) else 0):
            year_rng, style_rng = v.coin_rngs(BENCH_SEED, k * 100_000 + i)
            year = v.sample_year(year_rng)
            size = drawn_size("generator", k, i, (640, 480))
            front, back = v.render_photo_pair(year, replace(v.sample_style(style_rng), placement=placement), style_rng,
                                              photo_size=size)
            if "generator" in sets:
                coins.append(Coin("generator", placement, year, jpeg(front.image), jpeg(back.image)))
            if "holdout" not in sets:
                continue
            rng = random.Random(f"bench-holdout:{BENCH_SEED}:{k}:{i}")
            year = rng.randint(v.YEAR_MIN, v.YEAR_MAX)
            size = drawn_size("holdout", k, i, (640, 480))
            front, back, _ = h.render_holdout_photo_pair(year, rng, placement=placement, photo_size=size)
            coins.append(Coin("holdout", placement, year, jpeg(front.image), jpeg(back.image)))
    for i in range(no_year):
        text_rng, style_rng = v.no_year_rngs(BENCH_SEED, i)
        style = v.sample_style(style_rng)
        kind = ("letters", "blank", "worn")[i % 3]
        if kind == "worn":
            style = replace(style, wear=1.0, specular=0.0, relief="raised", extra={**style.extra, "wear_scale": 9.0})
            front, back = v.render_photo_pair(v.sample_year(text_rng), style, style_rng)
        else:
            text = "" if kind == "blank" else "".join(text_rng.choice(v.NO_YEAR_LETTERS) for _ in range(4))
            front, back = v.render_photo_pair(None, style, style_rng, year_text=text)
        coins.append(Coin("no_year", kind, None, jpeg(front.image), jpeg(back.image)))
        rng = random.Random(f"bench-no-year-struck:{BENCH_SEED}:{i}")
        letters = "".join(rng.choice("ABCDEFGHKLMNPRSTVWXYZ") for _ in range(rng.choice((0, 4))))
        front, back, _ = s.render_struck_photo_pair(None, rng, year_text=letters, holdout=i % 2 == 1)
        coins.append(Coin("no_year", "struck", None, jpeg(front.image), jpeg(back.image)))
    for i in range(no_coin if "struck" in sets else 0):  # both faces in one photo, sent as front and back
        year_rng, look_rng = s.struck_rngs(BENCH_SEED + 1, i)
        year = s.sample_struck_year(year_rng)
        photo, _ = s.two_faces_photo(year, look_rng)
        coins.append(Coin("two_faces", "struck", year, jpeg(photo), jpeg(photo)))
    for i in range(no_coin):
        kind = ("table", "banknote", "bottle_cap")[i % 3]
        coins.append(Coin("no_coin", kind, None, jpeg(not_a_coin(kind, i)), jpeg(not_a_coin("table", i + 1000))))
    return coins


def not_a_coin(kind: str, i: int) -> Image.Image:
    from coin_assets.synth import varied as v

    rng = random.Random(f"bench-not-a-coin:{i}")
    style = v.sample_style(rng)
    img = Image.fromarray((v.background(640, 480, style, np.random.default_rng(i)) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    font = v._font("DejaVuSans-Bold.ttf", 28)
    if kind == "banknote":
        draw.rectangle([60, 110, 580, 370], fill=(170, 200, 160), outline=(60, 90, 60), width=6)
        draw.text((90, 130), "BANK OF NATIO", font=font, fill=(40, 60, 40))
        draw.text((470, 300), "10", font=v._font("DejaVuSans-Bold.ttf", 48), fill=(40, 60, 40))
        draw.text((90, 310), f"SERIES {rng.randint(1950, 2020)}", font=font, fill=(40, 60, 40))
    elif kind == "bottle_cap":
        cx, cy, r = 320, 240, 150
        teeth = [(cx + (r + (10 if k % 2 else 0)) * math.cos(k * math.pi / 21),
                  cy + (r + (10 if k % 2 else 0)) * math.sin(k * math.pi / 21)) for k in range(42)]
        draw.polygon(teeth, fill=(190, 30, 30))
        draw.ellipse([cx - r + 20, cy - r + 20, cx + r - 20, cy + r - 20], fill=(210, 210, 215))
        draw.text((cx - 70, cy - 18), "COLA", font=v._font("DejaVuSans-Bold.ttf", 44), fill=(190, 30, 30))
    return img


# ------------------------------------------------------------------------------------------ the product


def ask_api(base: str, coins: list[Coin]) -> list[dict]:
    out = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for coin in coins:
            started = time.perf_counter()
            resp = client.post("/predict", files={"front": ("front.jpg", coin.front, "image/jpeg"),
                                                  "back": ("back.jpg", coin.back, "image/jpeg")})
            body = resp.json()
            body["status"] = resp.status_code
            body["seconds"] = time.perf_counter() - started
            out.append(body)
    return out


def start_api(data_dir: str) -> tuple[subprocess.Popen, str]:
    from bench_serving import free_port, start

    port = free_port()
    env = {**os.environ, "COIN_ASSETS_DATA_DIR": data_dir}
    log = Path(tempfile.mkdtemp(prefix="bench_reading_")) / "api.log"
    proc = start([sys.executable, "-m", "coin_assets.serving", "--port", str(port), "--log-level", "warning"],
                 env, log, f"http://127.0.0.1:{port}/health", timeout=300)
    return proc, f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------------------------ baselines


def coin_views(front: bytes) -> list[Image.Image]:
    """The front at four rotations and its unwrapped rim (both ways up), as the baselines read it."""
    from coin_assets.core.coin_crop import find_coin
    from coin_assets.ml.year_reading import face_view, unwrap_rim

    img = Image.open(io.BytesIO(front)).convert("RGB")
    img.thumbnail((1024, 1024))
    finding = find_coin(img)
    views = [img.rotate(a, expand=True) for a in (0, 90, 180, 270)]
    if finding.found:
        c = finding.circle
        view, _ = face_view(img, c.cx, c.cy, c.radius)
        strip, _ = unwrap_rim(view)
        views += [strip, strip.rotate(180)]
    return views


def vote(texts: list[tuple[str, float]]) -> int | None:
    weights: dict[int, float] = defaultdict(float)
    for text, score in texts:
        for m in YEAR_RUN.finditer(text.replace(" ", "")):
            weights[int(m.group())] += score
    return max(weights, key=weights.get) if weights else None


class RapidOcrBaseline:
    name = "RapidOCR"

    def __init__(self):
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()

    def read(self, front: bytes) -> int | None:
        texts = []
        for view in coin_views(front):
            result, _ = self.engine(np.asarray(view)[..., ::-1])
            texts += [(text, float(score)) for _, text, score in (result or [])]
        return vote(texts)


class TesseractBaseline:
    name = "Tesseract"

    def __init__(self):
        if not shutil.which("tesseract"):
            raise RuntimeError("tesseract is not installed (make tesseract)")

    def read(self, front: bytes) -> int | None:
        texts = []
        for view in coin_views(front):
            buf = io.BytesIO()
            view.save(buf, "PNG")
            done = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "11"], input=buf.getvalue(),
                                  capture_output=True, timeout=60)
            texts.append((done.stdout.decode(errors="replace"), 1.0))
        return vote(texts)


# -------------------------------------------------------------------------------------------- figures


def summarise(coins: list[Coin], answers: list[dict], baselines: dict[str, list]) -> list[dict]:
    rows = []
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, coin in enumerate(coins):
        groups[(coin.set, coin.placement)].append(i)
        groups[(coin.set, "all")].append(i)
    for (set_name, placement), idx in sorted(groups.items()):
        n = len(idx)
        answered = [i for i in idx if answers[i].get("status") == 200 and not answers[i]["unreadable"]
                    and not answers[i]["needs_review"]]
        has_year = [i for i in idx if coins[i].year is not None]
        right = [i for i in answered if coins[i].year is not None and round(answers[i]["year"]) == coins[i].year]
        wrong = [i for i in answered if i not in right]
        no_coin = [i for i in idx if (answers[i].get("reading") or {}).get("coins", 1) == 0]
        row = {"set": set_name, "placement": placement, "coins": n,
               "exact": len(right) / n, "confident_wrong": len(wrong) / n, "flagged": 1 - len(answered) / n,
               "no_coin_found": len(no_coin) / n}
        if has_year:
            errors = [abs(answers[i]["year"] - coins[i].year) for i in answered if coins[i].year is not None]
            row["mae_answered"] = float(np.mean(errors)) if errors else math.nan
            covered = [i for i in has_year if answers[i].get("status") == 200 and answers[i]["lower_90"] is not None
                       and answers[i]["lower_90"] <= coins[i].year <= answers[i]["upper_90"]]
            row["coverage_90"] = len(covered) / len(has_year)
        for name, reads in baselines.items():
            row[f"{name}_exact"] = sum(reads[i] is not None and reads[i] == coins[i].year for i in idx) / n
            row[f"{name}_wrong"] = sum(reads[i] is not None and reads[i] != coins[i].year for i in idx) / n
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k not in ("set", "placement", "coins")]
    print(f"{'set':10} {'placement':12} {'coins':>5} " + " ".join(f"{k:>16}" for k in keys))
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, math.nan)
            cells.append(f"{v:>16.3f}" if k.startswith("mae") else f"{100 * v:>15.1f}%")
        print(f"{r['set']:10} {r['placement']:12} {r['coins']:>5} " + " ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=None, help="a running API; default: start one on --data-dir")
    parser.add_argument("--data-dir", default=os.environ.get("COIN_ASSETS_DATA_DIR", "data"))
    parser.add_argument("--per-placement", type=int, default=12)
    parser.add_argument("--no-year", type=int, default=12)
    parser.add_argument("--no-coin", type=int, default=6)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--sets", default="generator,holdout,struck,struck_holdout",
                        help="comma-separated: generator, holdout, struck, struck_holdout")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--struck-size", default="640x480",
                        help="WxH of the photographic coins' photos (1600x1200: the coin fills a phone's photo)")
    parser.add_argument("--camera-sizes", action="store_true",
                        help="every coin with a year at a camera's size, drawn as the training generator draws its "
                             "full-size photos (overrides --struck-size)")
    parser.add_argument("--small-sizes", action="store_true",
                        help="every coin with a year in a small photo: the same shapes, long side 256-480 px")
    args = parser.parse_args(argv)
    started = time.time()
    width, height = (int(n) for n in args.struck_size.lower().split("x"))
    coins = make_coins(args.per_placement, args.no_year, args.no_coin, tuple(args.sets.split(",")), (width, height),
                       args.camera_sizes, args.small_sizes)
    proc = None
    base = args.api
    if base is None:
        proc, base = start_api(args.data_dir)
    try:
        answers = ask_api(base, coins)
    finally:
        if proc is not None:
            from bench_serving import stop

            stop(proc)
    versions = sorted({f"{a.get('model_name')} v{a.get('model_version')}" for a in answers if a.get("status") == 200})
    seconds = sorted(a["seconds"] for a in answers)
    print(f"through POST /predict of {base} ({', '.join(versions)}): {len(coins)} coins, "
          f"median {seconds[len(seconds) // 2]:.2f} s a request")
    baselines = {}
    if not args.no_baselines:
        for cls in (RapidOcrBaseline, TesseractBaseline):
            try:
                engine = cls()
            except Exception as err:
                print(f"{cls.name}: not run ({err})")
                continue
            t = time.perf_counter()
            baselines[engine.name] = [engine.read(c.front) for c in coins]
            print(f"{engine.name}: {(time.perf_counter() - t) / len(coins):.2f} s a coin")
    rows = summarise(coins, answers, baselines)
    print_table(rows)
    print(f"bench_reading: {time.time() - started:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
