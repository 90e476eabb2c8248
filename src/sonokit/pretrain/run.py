"""The pretraining loop: frames -> ultrasound views -> SimCLR's contrastive loss, or cross-entropy on labels.

Two methods share the loop, the views, the run folder and resuming:
    simclr       unlabelled frames; two views of each must agree and differ from the other frames' views
    supervised   a labelled table (path, label[, source]); one view of each frame, class-balanced cross-entropy
                 over the union of every source's labels (`source:label`), so labelled sets of other tasks and
                 organs teach one backbone (how the shipped backbone was made; no measured transfer gain yet on
                 real sets it never saw, like SimCLR: README).

The run folder holds what a user needs and nothing half-written (each file is written to a temporary name and
renamed after every epoch):
    backbone.safetensors   the backbone's weights under `backbone.` (what `sonokit train --weights RUN` loads),
                           the card below in its metadata
    pretrain_card.json     method, data counts, model, input size and normalisation, loss per epoch
    checkpoint.pt          backbone + projection head + optimiser after the last finished epoch (`--resume`)
An epoch's frame order and views depend only on (seed, epoch), so a resumed run gives the weights of one that
never stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sonokit.errors import InputError
from sonokit.models.shipped import CARD_KEY
from sonokit.utils import get_logger
from sonokit.utils.atomic import atomic_path, atomic_write_json

log = get_logger(__name__)

BACKBONE_FILE = "backbone.safetensors"
CARD_FILE = "pretrain_card.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class PretrainConfig:
    data: list[str]
    out: str
    method: str = "simclr"  # or "supervised" (a table with a label column)
    model: str = "resnet10_w32"  # the network of classify and fetal-plane's defaults: --weights RUN fits them
    size: int = 96
    channels: int = 1
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    # smallest crop (area fraction) of a view; None: 0.35 simclr, 0.6 supervised (keeps most of the finding)
    min_crop: float | None = None
    projection_dim: int = 64
    frame_every: int = 4  # frames of a cine: every 4th ...
    max_frames: int = 32  # ... at most 32 per cine
    mean: list[float] = field(default_factory=lambda: [0.5])  # the 2D tasks' default normalisation
    std: list[float] = field(default_factory=lambda: [0.25])
    seed: int = 0
    resume: bool = False
    stop_after: int | None = (
        None  # end this call after this many epochs in all (run in pieces, then --resume)
    )


class ProjectionHead(nn.Module):
    """SimCLR's MLP on the pooled features; thrown away after pretraining (the loss lives in its output space)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = max(out_dim, in_dim)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: each view must pick its partner among the other 2N-2."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, partner)


METHODS = ("simclr", "supervised")


def frame_index(data: list[str], every: int, max_frames: int, labelled: bool = False) -> pd.DataFrame:
    """(path, frame[, label]) rows of every readable file under `data` (files, folders, or one CSV with a `path`
    column; `labelled`: one CSV with `path` and `label`, labels prefixed by an optional `source` column)."""
    from sonokit.data.frames import expand_video_frames
    from sonokit.io import find_inputs

    is_table = len(data) == 1 and str(data[0]).lower().endswith(".csv")
    if labelled and not is_table:
        raise InputError("supervised pretraining needs one CSV table with `path` and `label` columns")
    if is_table:
        from sonokit.data.tables import read_csv_text, resolve_paths

        table = Path(data[0])
        df = read_csv_text(table)
        for col in ("path", "label") if labelled else ("path",):
            if col not in df.columns:
                raise InputError(f"the table has no `{col}` column", table)
        paths = resolve_paths(df["path"], table.parent).tolist()
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise InputError(f"{len(missing)} files of the table do not exist, e.g. {missing[0]}", table)
        files = pd.DataFrame({"path": paths})
        if labelled:
            labels = df["label"].str.strip()
            empty = labels.eq("") | labels.str.lower().isin(["nan", "none", "null"])
            if empty.any():
                raise InputError(
                    f"{int(empty.sum())} rows have no label, e.g. row {int(empty.idxmax()) + 2}", table
                )
            files["label"] = (df["source"].str.strip() + ":" + labels) if "source" in df.columns else labels
            if files["label"].nunique() < 2:
                raise InputError("supervised pretraining needs at least 2 labels", table)
    else:
        files = pd.DataFrame({"path": [str(p) for p in find_inputs(data)]})
    rows = expand_video_frames(files, every=every, max_frames=max_frames)
    if len(rows) < 2:
        raise InputError(
            f"pretraining needs at least 2 frames, found {len(rows)} in {', '.join(map(str, data))}"
        )
    return rows[["path", "frame", "label"] if labelled else ["path", "frame"]].reset_index(drop=True)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    state = np.random.SeedSequence([abs(int(seed)), int(epoch), 11]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


_VIEWS = "ultrasound views: crop/zoom, mirror, gain, gamma, depth ramp, speckle, blur"


def _card(cfg: PretrainConfig, index: pd.DataFrame, losses: list[float], seconds: float) -> dict[str, Any]:
    method = (
        f"supervised: class-balanced cross-entropy over the union of the sources' labels, {_VIEWS}"
        if cfg.method == "supervised"
        else f"SimCLR (NT-Xent), {_VIEWS}"
    )
    labels = (
        {str(k): int(v) for k, v in index["label"].value_counts().sort_index().items()}
        if "label" in index
        else None
    )
    return {
        "method": method,
        "labels": labels,
        "model": cfg.model,
        "input": {"channels": cfg.channels, "size": cfg.size, "mean": cfg.mean, "std": cfg.std},
        "files": int(index["path"].nunique()),
        "frames": int(len(index)),
        "epochs_done": len(losses),
        "loss_per_epoch": [round(v, 5) for v in losses],
        "seconds": round(seconds, 1),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("data", "out")},
        "use": f"sonokit train TASK --data DATA --weights RUN --model {cfg.model} (the head is trained from scratch)",
    }


def _save_backbone(path: Path, backbone: nn.Module, card: dict[str, Any]) -> None:
    from safetensors.torch import save

    state = {f"backbone.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        tmp.write_bytes(save(state, metadata={CARD_KEY: json.dumps(card)}))


def pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain `cfg.model`'s backbone on the frames of `cfg.data`; returns the run folder."""
    from sonokit.data.cache import PreprocessedCache
    from sonokit.data.frames import LetterboxRecipe
    from sonokit.models import create
    from sonokit.pretrain.views import ultrasound_view

    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT_FILE
    if out.exists() and any(out.iterdir()) and not (cfg.resume and ckpt_path.is_file()):
        hint = "pass --resume to continue it" if ckpt_path.is_file() else "choose an empty or new folder"
        raise InputError(f"the output folder is not empty; {hint}", out)
    if cfg.batch_size < 2:
        raise InputError(
            f"batch size must be at least 2 (a view needs other frames to differ from), got {cfg.batch_size}"
        )
    if cfg.method not in METHODS:
        raise InputError(f"unknown pretraining method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    supervised = cfg.method == "supervised"
    min_crop = cfg.min_crop if cfg.min_crop is not None else (0.6 if supervised else 0.35)
    if not 0 < min_crop <= 1:
        raise InputError(f"min_crop must be in (0, 1], got {min_crop}")
    index = frame_index(cfg.data, cfg.frame_every, cfg.max_frames, labelled=supervised)
    cache = PreprocessedCache(LetterboxRecipe(cfg.size, cfg.channels))
    torch.manual_seed(cfg.seed)  # the initial weights: a rerun with the same seed gives the same backbone
    model = create(cfg.model, num_classes=1, in_chans=cfg.channels, img_size=cfg.size)
    backbone = model.backbone
    if supervised:
        classes = sorted(index["label"].unique())
        targets = torch.tensor(index["label"].map({c: i for i, c in enumerate(classes)}).to_numpy())
        counts = torch.bincount(targets, minlength=len(classes)).float()
        # every label counts alike, however few its images
        class_weight = counts.sum() / (len(classes) * counts)
        head: nn.Module = nn.Linear(int(backbone.num_features), len(classes))
    else:
        head = ProjectionHead(int(backbone.num_features), cfg.projection_dim)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    start, spent = 0, 0.0
    if cfg.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        backbone.load_state_dict(ckpt["backbone"])
        head.load_state_dict(ckpt["head"])
        opt.load_state_dict(ckpt["optimizer"])
        losses, spent = [float(v) for v in ckpt["losses"]], float(ckpt["seconds"])
        start = len(losses)
        log.info("resuming %s after epoch %d of %d", out, start, cfg.epochs)
    out.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(cfg.mean * (cfg.channels if len(cfg.mean) == 1 else 1)).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std * (cfg.channels if len(cfg.std) == 1 else 1)).view(1, -1, 1, 1)
    paths, frames = index["path"].tolist(), index["frame"].to_numpy()
    batch = min(cfg.batch_size, len(index))
    log.info(
        "pretraining %s on %d frames of %d files, %d epochs",
        cfg.model,
        len(index),
        index["path"].nunique(),
        cfg.epochs,
    )
    last = min(cfg.epochs, cfg.stop_after) if cfg.stop_after else cfg.epochs
    for epoch in range(start, last):
        began = time.perf_counter()
        for group in opt.param_groups:  # cosine decay, set per epoch so a resumed run uses the same rates
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        gen = _epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(index), generator=gen).numpy()
        backbone.train()
        head.train()
        total, steps = 0.0, 0
        for s in range(0, len(order) - batch + 1, batch):
            rows = order[s : s + batch]
            x = torch.from_numpy(np.stack([cache.frame(paths[i], int(frames[i])) for i in rows]))
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            crop = (min_crop, 1.0)
            if supervised:
                feats = backbone.forward_features((ultrasound_view(x, gen, crop) - mean) / std).mean(
                    dim=(2, 3)
                )
                loss = F.cross_entropy(head(feats), targets[rows], weight=class_weight)
            else:
                views = torch.cat([ultrasound_view(x, gen, crop), ultrasound_view(x, gen, crop)])
                z = head(backbone.forward_features((views - mean) / std).mean(dim=(2, 3)))
                loss = nt_xent(z[:batch], z[batch:], cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        losses.append(total / max(steps, 1))
        spent += time.perf_counter() - began
        card = _card(cfg, index, losses, spent)
        state = {"backbone": backbone.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                 "losses": losses, "seconds": spent}  # fmt: skip
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        _save_backbone(out / BACKBONE_FILE, backbone, card)
        atomic_write_json(out / CARD_FILE, card)
        log.info(
            "epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, cfg.epochs, losses[-1], time.perf_counter() - began
        )
    return out
