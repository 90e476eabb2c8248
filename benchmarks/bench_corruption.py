"""Speed of the corruptions and of SSIM on a real 800 x 540 HC18 frame (or a synthetic one without ../shared).

Prints one table: milliseconds per call for every corruption at half its saturation intensity, SSIM, and two
variant pairs that the implementation chose between:
- median blur: skimage rank median (histogram, uint8; used) vs scipy.ndimage.median_filter with a disk footprint;
- scale-up: one affine zoom (used; sub-pixel crop) vs slicing a whole-pixel crop and cv2.resize.

    .venv/bin/python benchmarks/bench_corruption.py [--repeat 5] [--image PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from sonokit.augment.corruption import CORRUPTIONS, corrupt, ssim

ROOT = Path(__file__).resolve().parents[1]


def _image(path: str | None) -> tuple[np.ndarray, str]:
    shared = Path(os.environ.get("SONOKIT_SHARED", ROOT.parent / "shared"))
    candidate = Path(path) if path else shared / "data" / "hc18" / "images" / "010_HC.png"
    if candidate.is_file():
        return cv2.imread(str(candidate), cv2.IMREAD_GRAYSCALE), candidate.name
    rng = np.random.default_rng(0)
    field = cv2.GaussianBlur(rng.random((540, 800)).astype(np.float32), (0, 0), 2)
    return cv2.normalize(field, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8), "synthetic 800x540"


def _time(fn, repeat: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image", default=None)
    args = parser.parse_args()
    image, name = _image(args.image)
    rows: list[tuple[str, str, float]] = []
    for cname, c in CORRUPTIONS.items():
        t = 0.5 * c.intensity_range[1]
        rows.append(
            (
                cname,
                f"apply @ {t:g}",
                _time(lambda c=c, t=t: c.apply(image, t, np.random.default_rng(0)), args.repeat),
            )
        )
    out, _ = corrupt(image, "gaussian_noise", 0.2, 0)
    rows.append(("ssim", "skimage, data_range=255", _time(lambda: ssim(image, out), args.repeat)))

    from scipy import ndimage
    from skimage.filters import rank
    from skimage.morphology import disk

    for r in (4, 10):
        rows.append(
            (
                f"median r={r}",
                "skimage rank (used)",
                _time(lambda r=r: rank.median(image, disk(r)), args.repeat),
            )
        )
        rows.append(
            (
                f"median r={r}",
                "scipy median_filter",
                _time(lambda r=r: ndimage.median_filter(image, footprint=disk(r)), args.repeat),
            )
        )
    h, w = image.shape
    f = 0.1
    x0, y0 = round(w * f / 2), round(h * f / 2)
    rows.append(
        (
            "scale_up 10%",
            "affine zoom (used)",
            _time(lambda: CORRUPTIONS["scale_up"].apply(image, f), args.repeat),
        )
    )
    rows.append(
        (
            "scale_up 10%",
            "slice + cv2.resize",
            _time(
                lambda: cv2.resize(image[y0 : h - y0, x0 : w - x0], (w, h), interpolation=cv2.INTER_LINEAR),
                args.repeat,
            ),
        )
    )

    print(f"image: {name} {image.shape[1]}x{image.shape[0]}, median of {args.repeat} runs")
    print(f"{'what':<16} {'variant':<26} {'ms':>9}")
    print("-" * 53)
    for what, variant, ms in rows:
        print(f"{what:<16} {variant:<26} {ms:>9.2f}")


if __name__ == "__main__":
    main()
