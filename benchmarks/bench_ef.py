"""Seconds per 200-frame 112x112 echo video for each EF path, end to end: decode + preprocess + model.

Paths (the same library calls `sonokit ef predict` makes):
    two-stream, all clips   the clip average of the video model (sonokit/configs/ef.yaml: 16 frames every 4th, a clip
                            every 16 frames)
    two-stream, one clip    a single clip
    segmentation + Simpson  U-Net on every frame -> LV area -> ED/ES per beat -> Simpson volumes -> EF per beat
    R(2+1)D, all clips      EchoNet-Dynamic's protocol (32 frames every 2nd, a clip starting at every frame):
                            the reference row; its model time is measured on --ref-clips clips and scaled to
                            all of them (marked "est.").
Models are randomly initialised (timing does not depend on the weights); `--run DIR` times trained runs instead.
Prints a markdown table with the machine and thread count; `--threads 1 2` compares thread counts in one run.

    python benchmarks/bench_ef.py
    python benchmarks/bench_ef.py --threads 1 2 --repeats 5 --out bench_ef.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from sonokit.core.config import resolve_config
from sonokit.core.run import LoadedRun, load_run
from sonokit.echo.frames import PreparedCine, compact, prepare_frames
from sonokit.echo.predict import EchoModel, measure_lv, video_ef
from sonokit.io import open_cine, write_video
from sonokit.tasks import get_task
from sonokit.utils import atomic_write_text

N_FRAMES = 200


def make_video(folder: Path, n_frames: int = N_FRAMES) -> Path:
    """A simulated apical four-chamber cine of n_frames frames at 112x112, written as MJPG AVI (EchoNet's format)."""
    from sonokit.synth.echo import render_echo, sample_echo_case

    case = sample_echo_case(seed=0, index=3)
    case = dataclasses.replace(case, n_frames=n_frames)
    clip = render_echo(case, 112)
    return write_video(folder / "study.avi", clip.frames, fps=case.fps)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fresh_model(task_name: str, model: str, options: dict | None = None) -> EchoModel:
    overrides = {"model": model, "options": options or {}}
    cfg = resolve_config(task_name, overrides=overrides, task_defaults=get_task(task_name).defaults)
    task = get_task(task_name)(cfg)
    net = task.build_model(load_init_weights=False).eval()
    run = LoadedRun(Path("."), cfg, task, net, {}, torch.device("cpu"))
    role = {"ef": "video", "lv-seg": "seg", "lv-trace": "trace"}[task_name]
    return EchoModel(run, role, role)


def trained_model(run_dir: str) -> EchoModel:
    run = load_run(run_dir, "cpu")
    role = {"ef": "video", "lv-seg": "seg", "lv-trace": "trace"}[run.task.name]
    return EchoModel(run, role, role)


def decode_prepare(path: Path, size: int) -> tuple[PreparedCine, float]:
    start = time.perf_counter()
    with open_cine(path) as cine:
        frames = cine.read()
        fps, spacing = cine.fps, cine.spacing_mm
    out, transform = prepare_frames(frames, size)
    prepared = PreparedCine(path, compact(out), fps, spacing, transform, frames.shape[1:3])
    return prepared, time.perf_counter() - start


def time_path(
    path: Path, model: EchoModel, repeats: int, one_clip: bool = False, ref_clips: int | None = None
):
    """(decode+prepare s, model s, units processed, estimated?) as medians over repeats."""
    task = model.run.task
    if one_clip:
        task.opts = task.opts.model_copy(update={"clip_stride": 10**6})
    dec, mod = [], []
    units, estimated = 0, False
    for r in range(repeats + 1):  # the first repeat warms caches and is dropped
        cine, t_dec = decode_prepare(path, model.run.cfg.size)
        if model.role == "video" and ref_clips:
            # EchoNet's all-clips protocol on a slow network: time ref_clips clips, scale to the full count
            from sonokit.echo.data import clip_starts

            o = task.opts
            total = len(clip_starts(len(cine.frames), o.frames, o.period, o.clip_stride))
            short = dataclasses.replace(cine, frames=cine.frames[: (o.frames - 1) * o.period + ref_clips])
            start = time.perf_counter()
            video_ef(model, short, None, batch_size=ref_clips)
            t_mod = (time.perf_counter() - start) * total / ref_clips
            units, estimated = total, True
        else:
            start = time.perf_counter()
            if model.role == "video":
                units = video_ef(model, cine, None)["clips"]
            else:
                measure_lv(model, cine)
                units = len(cine.frames)
            t_mod = time.perf_counter() - start
        if r:
            dec.append(t_dec)
            mod.append(t_mod)
    return statistics.median(dec), statistics.median(mod), units, estimated


def build_paths(args: argparse.Namespace) -> list[tuple[str, Callable[[], EchoModel], dict]]:
    """(label, model factory, timing options) per EF path; a factory builds a fresh model for each path."""
    runs = {load_run(r, "cpu").task.name: r for r in args.run}
    video = (
        partial(trained_model, runs["ef"]) if "ef" in runs else partial(fresh_model, "ef", args.video_model)
    )
    lv_run = runs.get("lv-seg") or runs.get("lv-trace")
    seg = partial(trained_model, lv_run) if lv_run else partial(fresh_model, "lv-seg", args.seg_model)
    video_name, lv = video().run.cfg.model, seg()
    lv_label = f"{lv.run.cfg.model} {'tracing' if lv.role == 'trace' else 'segmentation'} + Simpson"
    paths = [
        (f"{video_name}, all clips", video, {}),
        (f"{video_name}, one clip", video, {"one_clip": True}),
        (lv_label, seg, {}),
    ]
    if not args.no_reference:
        ref = partial(fresh_model, "ef", "r2plus1d_18", {"frames": 32, "period": 2, "clip_stride": 1})
        paths.append(("r2plus1d_18, all clips (EchoNet, reference)", ref, {"ref_clips": args.ref_clips}))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ref-clips", type=int, default=4, help="R(2+1)D clips actually timed (then scaled)")
    parser.add_argument("--video-model", default="two-stream")
    parser.add_argument("--seg-model", default="unet")
    parser.add_argument("--run", action="append", default=[], help="time a trained ef / lv-seg run instead")
    parser.add_argument("--no-reference", action="store_true", help="skip the R(2+1)D row")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp))
        rows = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            for label, make, kw in build_paths(args):
                model = make()
                dec, mod, units, est = time_path(video, model, args.repeats, **kw)
                unit = "clips" if model.role == "video" else "frames"
                rows.append((label, threads, f"{units} {unit}", dec, mod, dec + mod, est))

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        f"EF end to end on one {N_FRAMES}-frame 112x112 MJPG AVI (decode + preprocess + model), median of "
        f"{args.repeats}",
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
        "",
        "| path | threads | work | decode + preprocess (s) | model (s) | total (s) |",
        "|---|---|---|---|---|---|",
    ]
    for label, threads, work, dec, mod, total, est in rows:
        mark = " (est.)" if est else ""
        lines.append(f"| {label} | {threads} | {work} | {dec:.3f} | {mod:.3f}{mark} | {total:.3f}{mark} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
