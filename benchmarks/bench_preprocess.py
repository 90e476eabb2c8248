"""Time sector detection, masking and square cropping; compare two variants in one run.

    python benchmarks/bench_preprocess.py                    # default table
    python benchmarks/bench_preprocess.py --stat-frames 8    # variant B: detection statistics from 8 frames
    python benchmarks/bench_preprocess.py --repeat 10

Inputs: the real 640x480 four-chamber cine from pydicom-data (first 30 frames, RGB), a synthetic 30-frame fan of
the same size, a real single 1024x768 echo frame, and a real HC18 image when ../shared is present. Variant A is
the library default (statistics from up to 32 frames, INTER_AREA); variant B changes the number of statistics
frames and uses INTER_LINEAR, so one run shows what each costs. The geometry found by both is compared too.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import cv2
import numpy as np


def _inputs() -> dict[str, np.ndarray]:
    from pydicom.data import get_testdata_file
    from pydicom.pixels import iter_pixels

    out: dict[str, np.ndarray] = {}
    path = get_testdata_file("color3d_jpeg_baseline.dcm")
    if path:
        out["echo cine 30x480x640x3 (real)"] = np.stack(list(itertools.islice(iter_pixels(path), 30)))
    path = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    if path:
        import pydicom

        out["echo frame 768x1024 (real)"] = pydicom.dcmread(path).pixel_array
    out["fan cine 30x480x640x3 (synthetic)"] = _synthetic_cine()
    hc18 = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18" / "images" / "000_HC.png"
    if hc18.exists():
        out["HC18 540x800 (real)"] = cv2.imread(str(hc18), cv2.IMREAD_GRAYSCALE)
    return out


def _synthetic_cine(n: int = 30) -> np.ndarray:
    from sonokit.preprocess import render_sector

    mask = render_sector((480, 640), (320.0, 20.0), (-40.0, 40.0), (20.0, 420.0))
    rng = np.random.default_rng(0)
    frames = (rng.rayleigh(45.0, (n, 480, 640)).clip(0, 255).astype(np.uint8)) * mask
    for f in frames:
        cv2.putText(f, "SONOKIT 3.5MHz", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2)
    return np.repeat(frames[..., None], 3, axis=-1)


def _time(fn, repeat: int) -> tuple[float, float, object]:
    result, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), float(np.min(times)), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--stat-frames", type=int, default=8, help="variant B: frames used for detection statistics"
    )
    ap.add_argument("--size", type=int, default=112)
    args = ap.parse_args()

    import sonokit.preprocess.frames as frames
    from sonokit.preprocess import apply_mask, crop_square, detect_sector

    variants = {
        "A (default)": (frames.MAX_STAT_FRAMES, cv2.INTER_AREA),
        f"B ({args.stat_frames} stat frames, linear)": (args.stat_frames, cv2.INTER_LINEAR),
    }
    print(
        f"{'input':36s} {'variant':30s} {'detect ms':>10s} {'mask ms':>8s} {'crop ms':>8s} {'kind':>7s}  geometry"
    )
    default_stat_frames = frames.MAX_STAT_FRAMES
    for name, x in _inputs().items():
        for label, (stat_frames, interp) in variants.items():
            frames.MAX_STAT_FRAMES = stat_frames
            try:
                det, _, geo = _time(lambda x=x: detect_sector(x), args.repeat)
            finally:
                frames.MAX_STAT_FRAMES = default_stat_frames
            msk, _, _ = _time(lambda x=x, geo=geo: apply_mask(x, geo), args.repeat)
            crp, _, _ = _time(lambda x=x, geo=geo, i=interp: crop_square(x, geo, args.size, i), args.repeat)
            desc = ""
            if geo.kind == "sector":
                desc = (
                    f"apex ({geo.apex[0]:.1f}, {geo.apex[1]:.1f}) angles ({geo.angles_deg[0]:.2f}, "
                    f"{geo.angles_deg[1]:.2f}) radii ({geo.radii[0]:.0f}, {geo.radii[1]:.0f})"
                )
            print(f"{name:36s} {label:30s} {det:10.1f} {msk:8.1f} {crp:8.1f} {geo.kind:>7s}  {desc}")


if __name__ == "__main__":
    main()
