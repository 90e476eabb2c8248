"""Frames per second of `sonokit synth` image formation at 112 x 112 on one CPU thread.

Compares the PSF variants (OpenCV separable filter vs SciPy FFT, float32 vs float64) on a static phantom,
then times the full echo path (four-chamber phantom evaluated per frame, speckle moving with the wall) in both
looks (`--realism basic` and the default `full`) as seconds per video over the first `--videos` cases.
Prints a markdown table. Usage: python benchmarks/bench_synth.py [--frames 300] [--size 112] [--videos 8]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def _fps(fn, frames: int, repeats: int) -> float:
    fn(min(frames, 20))  # warm caches (remap tables, FFT plans)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(frames)
        best = min(best, time.perf_counter() - t)
    return frames / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--videos", type=int, default=8, help="echo cases timed per look")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from sonokit.synth import render_bmode
    from sonokit.synth.echo import render_echo, sample_echo_case

    rows = []
    for method in ("sepconv", "fft"):
        for dtype in (np.float32, np.float64):
            for pooled in (True, False):
                fps = _fps(
                    lambda n, m=method, d=dtype, p=pooled: render_bmode(
                        size=args.size, n_frames=n, method=m, dtype=d, pooled_noise=p
                    ),
                    args.frames,
                    args.repeats,
                )
                label = f"static phantom, {method}, {np.dtype(dtype).name}, {'pooled' if pooled else 'fresh'} noise"
                rows.append((label, fps))

    video_rows = []
    for realism in ("basic", "full"):
        cases = [sample_echo_case(0, i, args.size, realism=realism) for i in range(args.videos)]
        render_echo(cases[0], args.size)  # warm caches
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            for case in cases:
                render_echo(case, args.size)
            best = min(best, time.perf_counter() - t)
        frames = sum(c.n_frames for c in cases)
        rows.append((f"echo A4C cines, realism {realism} (phantom + wall motion + formation)", frames / best))
        video_rows.append((realism, best / len(cases), frames / len(cases)))
    print(f"\n`sonokit synth` image formation, {args.size}x{args.size}, 1 thread (torch, OpenCV)\n")
    print("| variant | frames/s |")
    print("|---|---:|")
    for label, fps in rows:
        chosen = " (default)" if label.startswith("static phantom, sepconv, float32, pooled") else ""
        print(f"| {label}{chosen} | {fps:,.0f} |")
    print(f"\necho cines, seconds per video (first {args.videos} cases of seed 0, best of {args.repeats})\n")
    print("| realism | s/video | frames/video |")
    print("|---|---:|---:|")
    for realism, sec, nf in video_rows:
        print(f"| {realism} | {sec:.3f} | {nf:.1f} |")


if __name__ == "__main__":
    main()
