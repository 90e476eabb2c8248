"""What every echo task trained on cines shares (`ef`, `lv-seg`, `lv-trace`).

Why one base: the three read the same EchoNet-style folders through the same prepared-frame cache, check the
videos the same way before training, grade EF with the same heart-function presets, build their network through
the one model registry and predict on new files the same way; each task module keeps only what is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from torch import nn

from sonokit.echo.data import read_echo_index
from sonokit.echo.frames import PreparedStore
from sonokit.errors import InputError
from sonokit.tasks.base import Task, TaskOptions, normalise_batch

#: The model card's `preprocess` line of every echo task.
CINE_PREPROCESS = "frames at size x size used as they are; others: sector crop, centred zero pad, resize"

#: Defaults every echo task shares: EchoNet-Dynamic's 112 px frames, three channels, its grey-level statistics.
ECHO_DEFAULTS: dict[str, Any] = {
    "size": 112,
    "channels": 3,
    "mean": [0.13],
    "std": [0.19],
    "weight_decay": 0.0001,
}


class CineOptions(TaskOptions):
    thresholds: str = "default"


class CineTask(Task):
    """Base of the echo tasks; subclasses name the model kind they build and what --data must hold."""

    allow_hflip = False
    Options = CineOptions
    opts: CineOptions
    data_hint: ClassVar[str] = "ECHONET_FOLDER"  # what --data must be, for the message when it is missing
    need_ef: ClassVar[bool] = True  # whether every video of the index needs an EF
    pipeline: ClassVar[str] = "echo"  # names the task in the messages about files it cannot predict on

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        from sonokit.clinical import get_thresholds

        get_thresholds(self.opts.thresholds)  # an unknown preset fails now, not after training
        self.echonet = None
        self.store = PreparedStore(cfg.size)

    def read_index(self) -> pd.DataFrame:
        if self.cfg.data is None:
            raise InputError(f"no dataset given: pass --data {self.data_hint}")
        df, self.echonet = read_echo_index(self.cfg.data, need_ef=self.need_ef)
        return df

    def check_items(self, items: pd.DataFrame) -> None:
        """Open every video now (header, first and last frame), so a damaged file fails before training."""
        from sonokit.echo.frames import count_cine_frames

        for path in items["path"].astype(str).unique():
            count_cine_frames(path)

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        info = super().describe_data(index, items)
        info["videos"] = {split: int(df["path"].nunique()) for split, df in items.items()}
        return info

    def build_network(self, kind: str, load_init_weights: bool, **kw: Any) -> nn.Module:
        """`cfg.model`, which must be a registered network of `kind`, with `cfg.weights` unless the weights will
        come from a run folder (`load_init_weights=False`)."""
        from sonokit.models import build

        return build(
            self.cfg.model,
            kind=kind,
            in_chans=self.cfg.channels,
            pretrained=self.cfg.pretrained if load_init_weights else None,
            weights=self.cfg.weights if load_init_weights else None,
            **kw,
        )

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's frames or clips normalised with the run's channel statistics."""
        mean, std = self.cfg.channel_stats()
        return normalise_batch(batch["x"], mean, std)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        return model(self.inputs(batch))

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        from sonokit.echo.frames import cine_index

        df, errors = cine_index(list(files), self.pipeline)
        return (self.expand(df) if len(df) else df), errors
