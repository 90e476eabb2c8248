"""`sonokit ef predict` over a folder of 200+ EchoNet-style AVIs in one call: seconds per video, end to end.

End to end = what the command does: find the files, decode each AVI, prepare it at the model size, run the
models, build the CSV rows. Compared in one run, on the same files and the same models:
    before              decode, then model, one study after the other, weights in the default layout
    channels-last       the models and their inputs in the channels-last layout (oneDNN's fast 3D convs)
    folded + grey       echo.predict.prepare_for_prediction: BatchNorm folded into the convolutions, grey clips
                        fed as one channel instead of three copies
    N at once           N studies decoded and measured at once, each in a thread with 1/N of torch's threads
                        (--workers N; `sonokit ef predict`'s default is 2)
and the EF values must agree with the first row's (max |difference| printed). Videos: simulated apical four-chamber
cines at 112x112 (EchoNet's size, so no sector crop, as on EchoNet-Dynamic), 100-200 frames at 50 fps, MJPG AVI;
--unique of them are rendered and copied to --n files (decode cost does not depend on the picture). Models are
randomly initialised (time does not depend on weights) unless --run gives trained runs.

    python benchmarks/bench_ef_predict.py                           # two-stream (ef defaults), 220 videos
    python benchmarks/bench_ef_predict.py --roles ef,lv-seg --n 100  # video model + segmentation
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from bench_ef import fresh_model, trained_model
from sonokit.echo.predict import predict_studies, prepare_for_prediction
from sonokit.io import write_video
from sonokit.train.engine import channels_last_model


def make_videos(folder: Path, n: int, unique: int) -> list[Path]:
    from sonokit.synth.echo import render_echo, sample_echo_case

    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    rng = np.random.default_rng(0)
    for i in range(unique):
        path = folder / f"src_{i:03d}.avi"
        if not path.exists():
            case = dataclasses.replace(
                sample_echo_case(seed=0, index=i), n_frames=int(rng.integers(100, 201))
            )
            write_video(path, render_echo(case, 112).frames, fps=50.0)
        sources.append(path)
    files = []
    for k in range(n):
        path = folder / f"study_{k:04d}.avi"
        if not path.exists():
            shutil.copyfile(sources[k % unique], path)
        files.append(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=220)
    parser.add_argument("--unique", type=int, default=20)
    parser.add_argument("--roles", default="ef", help="comma list of ef, lv-seg, lv-trace (untrained models)")
    parser.add_argument("--run", action="append", default=[], help="trained run folders instead of --roles")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--data-dir", type=Path, default=Path("bench_data/ef_predict"))
    args = parser.parse_args()
    files = make_videos(args.data_dir, args.n, args.unique)
    plain = [trained_model(r) for r in args.run] or [
        fresh_model(r, get_default(r)) for r in args.roles.split(",")
    ]
    if not args.run:  # untrained weights give one EF for every video: calibrate BatchNorm on real clips
        calibrate(plain, files[: args.unique])
    fast = copy.deepcopy(plain)
    for m in fast:  # the previous release's load_echo_models
        if m.role == "video":
            channels_last_model(m.run.model)
    prepared = [prepare_for_prediction(m) for m in copy.deepcopy(plain)]  # today's load_echo_models
    variants = [("before: sequential, default layout", plain, 0), ("channels-last, sequential", fast, 0)] + [
        (f"folded + grey, channels-last, {_mode(w)}", prepared, w) for w in [0, *args.workers]
    ]
    results = []
    for label, models, workers in variants:
        predict_studies(files[:3], models, workers=0)  # warm-up: allocator, first-call overheads
        start = time.perf_counter()
        table, errors = predict_studies([str(args.data_dir)], models, workers=workers)
        seconds = time.perf_counter() - start
        assert not errors, errors[:3]
        results.append((label, seconds, table.set_index("path")["ef"]))
    spread = results[0][2].std()

    names = ", ".join(f"{m.run.cfg.model} ({m.role})" for m in plain)
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}; models: {names}\n"
    )
    print(f"(EF across the videos: SD {spread:.2f} points, so equal values are a real check)\n")
    print("| variant | videos | seconds | s/video | speed-up | max abs EF difference vs before |")
    print("|---|---|---|---|---|---|")
    base_s, base_ef = results[0][1], results[0][2]
    for label, seconds, ef in results:
        diff = float(np.nanmax(np.abs(ef.loc[base_ef.index].to_numpy() - base_ef.to_numpy())))
        print(
            f"| {label} | {len(ef)} | {seconds:.1f} | {seconds / len(ef):.3f} | {base_s / seconds:.2f}x | {diff:.2g} |"
        )


def _mode(workers: int) -> str:
    return "sequential" if workers <= 1 else f"{workers} at once"


def calibrate(models: list, files: list[Path]) -> None:
    """Set BatchNorm statistics of untrained models from clips of the benchmark's videos, so outputs differ
    from video to video and the EF comparison between variants means something."""
    from sonokit.echo.data import clip_tensor, take_clip
    from sonokit.echo.frames import load_study
    from sonokit.tasks.base import normalise_batch

    torch.manual_seed(0)
    for m in models:
        task, cfg = m.run.task, m.run.cfg
        mean, std = cfg.channel_stats()
        clips = []
        for f in files:
            frames = load_study(f, [cfg.size]).prepared[cfg.size].frames
            if m.role == "video":
                clips.append(
                    clip_tensor(take_clip(frames, 0, task.opts.frames, task.opts.period), cfg.channels)
                )
        if not clips:
            continue
        net = m.run.model.train()
        for layer in net.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                layer.reset_running_stats()
                layer.momentum = None  # cumulative average over the calibration batches
        with torch.no_grad():
            for start in range(0, len(clips), 4):
                net(normalise_batch(torch.stack(clips[start : start + 4]), mean, std))
        last = [layer for layer in net.modules() if isinstance(layer, torch.nn.Linear)][-1]
        torch.nn.init.normal_(last.weight, std=10.0 / last.in_features**0.5)
        net.eval()


def get_default(role: str) -> str:
    from sonokit.tasks import get_task

    return get_task(role).defaults["model"]


if __name__ == "__main__":
    main()
