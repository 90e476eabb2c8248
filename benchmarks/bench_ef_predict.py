"""`sonokit ef predict` over a folder of 200+ EchoNet-style AVIs in one call: seconds per video, end to end.

End to end = what the command does: find the files, decode each AVI, prepare it at the model size, run the
models, build the CSV rows. Compared in one run, on the same files and the same models:
    before              decode, then model, one study after the other, weights in the default layout
    channels-last       the models and their inputs in the channels-last layout (oneDNN's fast 3D convs)
    folded + grey       echo.predict.prepare_for_prediction: BatchNorm folded into the convolutions, grey clips
                        fed as one channel instead of three copies
    N at once           N studies decoded and measured at once, each in a thread with 1/N of torch's threads
                        (--workers N; `sonokit ef predict`'s default is 2)
    (these four rows run the previous release's clip code, kept below as `previous_release`)
    onnxruntime         the folded + grey model exported to ONNX, run by onnxruntime (1 intra-op thread per
                        study, all graph optimisations) with today's clip code
    clips in one go     today's echo.predict.video_ef: a video's clips gathered with one index into one batch,
                        balanced batches (never a one-clip batch, which PyTorch runs with its slow CPU
                        convolution), grey input kept channels-last, the temporal stream's z-score in two passes
    shared first stage  + TwoStreamEF.forward_windows: overlapping clips run the spatial stream's first stage once
                        over their common frames (`sonokit ef predict`'s default)
and the EF values must agree with the first row's (max |difference| printed). CPU s/video is the process's CPU
time (all threads) per video: the work, which other jobs on a shared machine do not inflate as they do wall time. Videos: simulated apical four-chamber
cines at 112x112 (EchoNet's size, so no sector crop, as on EchoNet-Dynamic), 100-200 frames at 50 fps, MJPG AVI;
--unique of them are rendered and copied to --n files (decode cost does not depend on the picture). Models are
randomly initialised (time does not depend on weights) and calibrated on the videos so that their EF spreads
like a trained model's (SD about 8 points) unless --run gives trained runs.

    python benchmarks/bench_ef_predict.py                           # two-stream (ef defaults), 220 videos
    python benchmarks/bench_ef_predict.py --roles ef,lv-seg --n 100  # video model + segmentation
    python benchmarks/bench_ef_predict.py --skip before,channels-last,onnx  # only the faster rows
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_ef import fresh_model, trained_model
from sonokit.core.loop import channels_last_model
from sonokit.echo import predict as echo_predict
from sonokit.echo.predict import EchoModel, predict_studies, prepare_for_prediction
from sonokit.io import write_video
from sonokit.models import inference
from sonokit.models import video as video_models


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
    parser.add_argument(
        "--skip", default="", help="comma list of rows to leave out: before, channels-last, onnx"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("bench_data/ef_predict"))
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    files = make_videos(args.data_dir, args.n, args.unique)
    plain = [trained_model(r) for r in args.run] or [
        fresh_model(r, get_default(r)) for r in args.roles.split(",")
    ]
    if not args.run:  # untrained weights give one EF for every video: calibrate BatchNorm on real clips
        calibrate(plain, files[: args.unique])
    fast = copy.deepcopy(plain)
    for m in fast:  # the release before last's load_echo_models
        if m.role == "video":
            channels_last_model(m.run.model)
    prepared = [prepare_for_prediction(m) for m in copy.deepcopy(plain)]  # today's load_echo_models
    unshared = [dataclasses.replace(m, share_clips=False) for m in prepared]
    # (label, models, workers, previous release's clip code)
    variants = [("before: sequential, default layout", plain, 0, True)]
    if "before" in skip:  # the reference row for the EF check: today's code, models as loaded, one at a time
        variants = [("reference: today's code, unprepared models, sequential", plain, 0, False)]
    if "channels-last" not in skip:
        variants.append(("channels-last, sequential", fast, 0, True))
    variants += [(f"folded + grey, channels-last, {_mode(w)}", prepared, w, True) for w in [0, *args.workers]]
    last = args.workers[-1]
    with tempfile.TemporaryDirectory() as tmp:
        if "onnx" not in skip:
            onnx_models = [onnx_model(m, Path(tmp), last) for m in prepared]
            variants.append((f"onnxruntime (folded + grey export), {_mode(last)}", onnx_models, last, False))
        variants += [
            (f"clips in one go, balanced batches, {_mode(last)}", unshared, last, False),
            (f"+ shared first stage of overlapping clips, {_mode(last)} (default)", prepared, last, False),
        ]
        results = []
        for label, models, workers, previous in variants:
            with previous_release() if previous else contextlib.nullcontext():
                predict_studies(files[:3], models, workers=0)  # warm-up: allocator, first-call overheads
                start, cpu = time.perf_counter(), time.process_time()
                table, errors = predict_studies([str(args.data_dir)], models, workers=workers)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert not errors, errors[:3]
            results.append((label, seconds, cpu, table.set_index("path")["ef"]))
            print(f"{label}: {seconds / len(table):.3f} s/video", flush=True)
    spread = results[0][3].std()

    names = ", ".join(f"{m.run.cfg.model} ({m.role})" for m in plain)
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}; models: {names}\n"
    )
    print(f"(EF across the videos: SD {spread:.2f} points, so equal values are a real check)\n")
    reference = results[0][0].split(":")[0]
    print(
        f"| variant | videos | seconds | s/video | CPU s/video | speed-up | max abs EF difference vs {reference} |"
    )
    print("|---|---|---|---|---|---|---|")
    base_s, base_ef = results[0][1], results[0][3]
    for label, seconds, cpu, ef in results:
        diff = float(np.nanmax(np.abs(ef.loc[base_ef.index].to_numpy() - base_ef.to_numpy())))
        print(
            f"| {label} | {len(ef)} | {seconds:.1f} | {seconds / len(ef):.3f} | {cpu / len(ef):.3f} | "
            f"{base_s / seconds:.2f}x | {diff:.2g} |"
        )


def onnx_model(model: EchoModel, folder: Path, workers: int) -> EchoModel:
    """The prepared model exported to ONNX and run by onnxruntime, torch's threads split among the workers."""
    from sonokit.export.backend import OnnxModel
    from sonokit.export.onnx import write_onnx

    if model.role != "video":
        return model
    cfg = model.run.cfg
    shape = (1 if model.gray else cfg.channels, model.run.task.opts.frames, cfg.size, cfg.size)
    path = folder / f"{model.key}.onnx"
    write_onnx(model.run.model, shape, path, "auto")
    threads = max(1, torch.get_num_threads() // max(1, workers))
    run = dataclasses.replace(model.run, model=OnnxModel(path, threads=threads))
    return dataclasses.replace(model, run=run)


@contextlib.contextmanager
def previous_release():
    """The clip code of the release before this benchmark's last change, for the rows that show the way here:
    each clip built and normalised on its own, stacked, batches of 8 clips and what is left (one clip at times),
    the grey input in the default layout (copied to channels-last inside the network), torch.std_mean."""
    saved = echo_predict.video_ef, video_models.frame_differences, inference.GrayInputConv.forward
    echo_predict.video_ef = _previous_video_ef
    video_models.frame_differences = _previous_frame_differences
    inference.GrayInputConv.forward = _previous_gray_forward
    try:
        yield
    finally:
        echo_predict.video_ef, video_models.frame_differences, inference.GrayInputConv.forward = saved


@torch.inference_mode()
def _previous_video_ef(model, cine, beats=None, batch_size: int = 8) -> dict:
    from sonokit.echo.data import clip_starts, clip_tensor, take_clip
    from sonokit.tasks.base import normalise_batch

    task, cfg = model.run.task, model.run.cfg
    o = task.opts
    frames = cine.frames
    channels = 1 if model.gray and frames.ndim == 3 else cfg.channels
    mean, std = (v[:channels] for v in cfg.channel_stats())
    starts = clip_starts(len(frames), o.frames, o.period, o.clip_stride)
    extent = (o.frames - 1) * o.period + 1
    beat_starts = [b.ed for b in beats or [] if b.ed + extent <= len(frames)]
    all_starts = np.concatenate([starts, np.asarray(beat_starts, dtype=np.int64)])
    preds = []
    for s in range(0, len(all_starts), batch_size):
        x = torch.stack(
            [
                clip_tensor(take_clip(frames, int(st), o.frames, o.period, o.temporal_pad), channels)
                for st in all_starts[s : s + batch_size]
            ]
        )
        x = normalise_batch(x.to(model.run.device), mean, std).contiguous(
            memory_format=torch.channels_last_3d
        )
        preds.append(model.run.model(x).float().cpu().numpy()[:, 0])
    p = np.concatenate(preds)
    clips, per_beat = p[: len(starts)], p[len(starts) :]
    return {
        "ef": float(clips.mean()),
        "sd": float(clips.std()),
        "clips": int(len(clips)),
        "beats": float(per_beat.mean()) if len(per_beat) else math.nan,
    }


def _previous_frame_differences(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    diff = x[:, :, 1:] - x[:, :, :-1]
    diff = torch.cat([diff, diff[:, :, -1:]], dim=2)
    std, mean = torch.std_mean(diff, dim=(1, 2, 3, 4), keepdim=True)
    return (diff - mean) / (std + eps)


def _previous_gray_forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.gray(x) if x.shape[1] == 1 else self.conv(x)


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
        with torch.no_grad():  # EF spread like a trained model's: SD 8 points around 55 on these clips
            out = torch.cat(
                [
                    net(normalise_batch(torch.stack(clips[s : s + 4]), mean, std))
                    for s in range(0, len(clips), 4)
                ]
            )
            sd, centre = float(out.std()), float(out.mean())
            if sd > 0:
                k = 8.0 / sd
                last.weight.mul_(k)
                last.bias.copy_(55.0 + k * (last.bias - centre))


def get_default(role: str) -> str:
    from sonokit.tasks import get_task

    return get_task(role).defaults["model"]


if __name__ == "__main__":
    main()
