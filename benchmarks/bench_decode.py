"""Decoding speed: frames/s of sonokit's lazy readers against the plain loops they replace.

AVI: a synthetic 112x112 MJPG AVI (what `sonokit convert` writes), read by
  - "opencv loop": EchoNet-Dynamic's `loadvideo` (cap.read into a preallocated array, BGR->RGB),
  - "sonokit read()": `open_cine(path).read()` (includes the open-time check that decodes the last frame),
  - "sonokit iterate": `for frame in cine` (no stacking),
  - "sonokit frame(i) random": random access through seeks.
DICOM: the real SonoSite cines from pydicom's test data (JPEG Baseline YBR_FULL_422), read by
  - "pydicom ds.pixel_array": the whole cine decoded at once (what most scripts do),
  - "pydicom gdcm / pillow": the same, forcing one JPEG plugin (sonokit uses pydicom's default order),
  - "sonokit read()" / "sonokit frame(i) random": frame-by-frame decoding from the open file.

    python benchmarks/bench_decode.py                 # 3 repeats, median reported
    python benchmarks/bench_decode.py --repeat 5 --frames 400
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from sonokit.io import open_cine, write_video


def synthetic_avi(folder: Path, frames: int, size: int) -> Path:
    """A moving speckle-like pattern: compresses like echo, not like a flat test card."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (size * 2, size * 2), dtype=np.uint8), (0, 0), 1.5)
    video = np.stack(
        [base[i % size : i % size + size, (2 * i) % size : (2 * i) % size + size] for i in range(frames)]
    )
    return write_video(folder / "synthetic.avi", np.repeat(video[..., None], 3, axis=-1), fps=50.0)


def echonet_loadvideo(path: Path) -> np.ndarray:
    """EchoNet-Dynamic's echonet.utils.loadvideo, minus the transpose to (C, F, H, W)."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    video = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        ok, frame = capture.read()
        if not ok:
            raise ValueError(f"failed to load frame #{i} of {path}")
        video[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    capture.release()
    return video


def sonokit_read(path: Path) -> np.ndarray:
    with open_cine(path) as cine:
        return cine.read()


def sonokit_iterate(path: Path) -> int:
    with open_cine(path) as cine:
        return sum(1 for _ in cine)


def sonokit_random(path: Path, count: int) -> int:
    with open_cine(path) as cine:
        order = np.random.default_rng(0).integers(0, cine.n_frames, count)
        for i in order:
            cine.frame(int(i))
    return count


def pydicom_all(path: Path, plugin: str = "") -> np.ndarray:
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if plugin:
            return pydicom.pixels.pixel_array(str(path), decoding_plugin=plugin)
        return pydicom.dcmread(path).pixel_array


def timed_all(
    variants: list[tuple[str, str, int, Callable[[], object]]], repeat: int
) -> list[tuple[str, str, int, float]]:
    """Median seconds per variant. Variants run round-robin (after one warm-up each), so a burst of load from
    other processes hits every variant alike instead of whichever happened to be running."""
    for *_, fn in variants:
        fn()
    times: list[list[float]] = [[] for _ in variants]
    for _ in range(repeat):
        for k, (*_, fn) in enumerate(variants):
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return [
        (label, reader, n, statistics.median(t))
        for (label, reader, n, _), t in zip(variants, times, strict=True)
    ]


def machine() -> str:
    try:
        import torch

        threads = str(torch.get_num_threads())
    except ImportError:
        threads = "n/a"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    import pydicom

    return (
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {threads}, load average {load}; OpenCV {cv2.__version__}, pydicom {pydicom.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant (median reported)")
    parser.add_argument("--frames", type=int, default=200, help="frames in the synthetic AVI")
    parser.add_argument("--size", type=int, default=112, help="width and height of the synthetic AVI")
    parser.add_argument("--random", type=int, default=50, help="frames read by the random-access variants")
    args = parser.parse_args()

    variants: list[tuple[str, str, int, Callable[[], object]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        avi = synthetic_avi(Path(tmp), args.frames, args.size)
        label = f"AVI MJPG {args.size}x{args.size}, {args.frames} frames"
        variants += [
            (label, "opencv loop (EchoNet loadvideo)", args.frames, lambda: echonet_loadvideo(avi)),
            (label, "sonokit read()", args.frames, lambda: sonokit_read(avi)),
            (label, "sonokit iterate", args.frames, lambda: sonokit_iterate(avi)),
            (label, "sonokit frame(i) random", args.random, lambda: sonokit_random(avi, args.random)),
        ]
        rows = timed_all(variants, args.repeat)

    from pydicom.data import get_testdata_file

    for name in ("examples_ybr_color.dcm", "color3d_jpeg_baseline.dcm"):
        found = get_testdata_file(name)
        if found is None:
            continue
        path = Path(found)
        with open_cine(path) as cine:
            n, label = cine.n_frames, f"DICOM {name} ({cine.width}x{cine.height}, {cine.n_frames} frames)"
        count = min(args.random, n)
        variants = [
            (label, "pydicom ds.pixel_array", n, lambda p=path: pydicom_all(p)),
            (label, "pydicom gdcm", n, lambda p=path: pydicom_all(p, "gdcm")),
            (label, "pydicom pillow", n, lambda p=path: pydicom_all(p, "pillow")),
            (label, "sonokit read()", n, lambda p=path: sonokit_read(p)),
            (label, "sonokit frame(i) random", count, lambda p=path, c=count: sonokit_random(p, c)),
        ]
        rows += timed_all(variants, args.repeat)

    print(machine())
    print(f"median of {args.repeat} runs after one warm-up, variants interleaved\n")
    print("| input | reader | frames | seconds | frames/s | ms/frame |")
    print("|---|---|---:|---:|---:|---:|")
    for label, reader, frames, seconds in rows:
        print(
            f"| {label} | {reader} | {frames} | {seconds:.3f} | {frames / seconds:.0f} | {1000 * seconds / frames:.2f} |"
        )


if __name__ == "__main__":
    main()
