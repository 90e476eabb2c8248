"""`sonokit pretrain`: self-supervised pretraining of a 2D backbone on unlabelled images and cines."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain_cmd(
    data: list[Path] = typer.Argument(
        ...,
        help="Image/cine files, folders, or one CSV with a `path` column (supervised: `path,label[,source]`).",
    ),
    out: Path = typer.Option(..., "--out", help="Run folder (backbone.safetensors, pretrain_card.json)."),
    method: str = typer.Option(
        "simclr",
        "--method",
        help="simclr (no labels) or supervised (a labelled table; labels of many sources).",
    ),
    model: str = typer.Option(
        "resnet10_w32",
        "--model",
        help="Any 2D backbone of `sonokit models list` (default: the network of classify and fetal-plane).",
    ),
    size: int = typer.Option(96, "--size", min=16, help="Input size (frames are letterboxed to it)."),
    channels: int = typer.Option(1, "--channels", min=1, max=3, help="1 (grey) or 3."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Frames per step (each gives two views)."),
    lr: float = typer.Option(1e-3, "--lr"),
    temperature: float = typer.Option(0.2, "--temperature", help="SimCLR's softmax temperature."),
    min_crop: float | None = typer.Option(
        None,
        "--min-crop",
        help="Smallest crop (area fraction) of a view (default 0.35 simclr, 0.6 supervised).",
    ),
    frame_every: int = typer.Option(4, "--frame-every", min=1, help="Frames of a cine: every Nth ..."),
    max_frames: int = typer.Option(32, "--max-frames", min=1, help="... at most this many per cine."),
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: all)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out after its last epoch."),
    stop_after: int | None = typer.Option(
        None, "--stop-after", min=1, help="End after this many epochs in all (run in pieces with --resume)."
    ),
) -> None:
    """Learn a backbone from scans (SimCLR without labels, or supervised on labelled tables of any task);
    `train --weights OUT` starts from it."""
    import torch

    from sonokit.pretrain import PretrainConfig, pretrain

    if threads:
        torch.set_num_threads(threads)
    cfg = PretrainConfig(
        data=[str(d) for d in data], out=str(out), method=method, model=model, min_crop=min_crop, size=size, channels=channels, epochs=epochs,
        batch_size=batch_size, lr=lr, temperature=temperature, frame_every=frame_every, max_frames=max_frames,
        seed=seed, resume=resume, stop_after=stop_after,
    )  # fmt: skip
    run = pretrain(cfg)
    typer.echo(
        f"pretrained {model} -> {run / 'backbone.safetensors'} (use: sonokit train TASK --weights {run} --model {model})"
    )


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain_cmd)
