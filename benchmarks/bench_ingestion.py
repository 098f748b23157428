"""Silver decoding: Pillow draft-mode JPEG decoding against full decoding, same photos, same process.

    python benchmarks/bench_ingestion.py [--photos 40] [--size 4000x3000]

Prints photos/s for both and the speed-up ratio, plus peak memory.
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import time

from PIL import Image

from coin_assets.core.images import clean_image


def make_photos(n: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    try:
        from coin_assets.synth import render_coin_pair
    except ImportError:  # the generator is optional for this benchmark
        render_coin_pair = None
    rng = random.Random(seed)
    photos = []
    for i in range(n):
        if render_coin_pair is not None:
            img, _ = render_coin_pair(1950 + i % 70, rng, photo_size=size)
        else:
            img = Image.effect_noise(size, 40).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        photos.append(buf.getvalue())
    return photos


def run(photos: list[bytes], use_draft: bool) -> float:
    started = time.perf_counter()
    for data in photos:
        clean_image(data, use_draft=use_draft)
    return len(photos) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--size", default="4000x3000")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    photos = make_photos(args.photos, size)
    mib = sum(map(len, photos)) / 2**20
    full = run(photos, use_draft=False)
    draft = run(photos, use_draft=True)
    print(f"{args.photos} JPEG photos {size[0]}x{size[1]} ({mib:.1f} MiB) → silver (long side 512)")
    print(f"full decode : {full:7.2f} photos/s")
    print(f"draft decode: {draft:7.2f} photos/s")
    print(f"ratio draft/full: {draft / full:.2f}x")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
