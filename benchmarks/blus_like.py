"""A simulated lung-ultrasound set the size and shape of BLUS: 360 MP4 cines of 350x350x100 at 25 fps, 60 patients.

Used by bench_loader.py and bench_lus_cv.py. Each cine is `sonokit.synth.lus` rendered at 350 px for 20 frames
and played forward and backward to 100 frames (rendering 100 frames per cine would take 5x longer and changes
nothing about what is measured: the decode and preprocessing cost of a real 100-frame MP4). Labels are the
simulator's scores. Resumable: files already written are kept; `table.csv` (path, label, group) comes last.

    python benchmarks/blus_like.py --out bench_data/blus_like      # about 3 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

N_CINES, PATIENTS, SIZE, FRAMES, FPS, RENDERED = 360, 60, 350, 100, 25.0, 20


def _one(args: tuple[Path, int, int]) -> dict:
    from sonokit.io import write_video
    from sonokit.synth.lus import render_lus, sample_lus_case

    out, i, seed = args
    case = dataclasses.replace(sample_lus_case(seed, i), n_frames=RENDERED)
    rel = f"videos/cine_{i:04d}.mp4"
    if not (out / rel).exists():
        frames, _ = render_lus(case, SIZE)
        loop = np.r_[np.arange(RENDERED), np.arange(RENDERED - 2, 0, -1)]  # ping-pong: no jump at the seam
        write_video(out / rel, frames[np.resize(loop, FRAMES)], fps=FPS)
    return {"path": rel, "label": int(case.score), "group": f"patient_{i * PATIENTS // N_CINES:03d}"}


def make_blus_like(out: str | Path, n: int = N_CINES, seed: int = 0, workers: int = 2) -> Path:
    """Write (or complete) the set under `out`; returns the path of its table.csv."""
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    table = out / "table.csv"
    if table.exists() and len(pd.read_csv(table)) == n:
        return table
    with get_context("spawn").Pool(workers) as pool:
        rows = pool.map(_one, [(out, i, seed) for i in range(n)], chunksize=4)
    tmp = table.with_suffix(".tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    tmp.replace(table)
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench_data/blus_like")
    parser.add_argument("--n", type=int, default=N_CINES)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    path = make_blus_like(args.out, args.n, workers=args.workers)
    df = pd.read_csv(path)
    print(
        f"{path}: {len(df)} cines, {df['group'].nunique()} patients, labels {df['label'].value_counts().to_dict()}"
    )
