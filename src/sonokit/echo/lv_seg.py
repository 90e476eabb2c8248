"""`lv-seg`: the LV cavity as a mask on single frames (U-Net / LR-ASPP / DeepLabV3), learnt from the mask
rasterised from the expert tracing; its area curve gives ED/ES, its Simpson volumes the EF (see lv_base)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from sonokit.core.registry import register_task
from sonokit.echo.lv_base import LV_DEFAULTS, LVTask


def _pack(masks: np.ndarray) -> np.ndarray:
    """Masks (N, S, S) as bits: collected masks of a whole cine split stay an eighth of the size."""
    return np.packbits(masks.reshape(len(masks), -1).astype(bool), axis=1)


def _unpack(bits: np.ndarray, size: int) -> np.ndarray:
    return np.unpackbits(bits, axis=1, count=size * size).reshape(-1, size, size).astype(bool)


@register_task
class LVSegTask(LVTask):
    name = "lv-seg"
    kind = "segmentation"
    monitor = ("dice", "max")
    headline = ("mae", "rmse", "r2", "dice")
    target = "mask"
    intended_use = (
        "Research: segment the LV cavity on apical four-chamber echo frames; LV area per frame, ED/ES frames, "
        "Simpson volumes and EF per beat. Trained on the data set named in this card; not for clinical use."
    )
    defaults = {
        **LV_DEFAULTS,
        "model": "unet",
        "epochs": 30,
        "patience": 8,
        "options": {**LV_DEFAULTS["options"], "appearance_aug": False, "hflip": False, "area_plots": 4},
    }

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        return self.build_network("segmentation", load_init_weights)

    def loss(self, outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Binary cross-entropy plus soft Dice on the traced frames: the cavity is a small share of the frame."""
        h = batch["has_target"].bool()
        logits, y = outputs[h].float(), batch["y"][h].float()
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y)
        p = torch.sigmoid(logits)
        inter = (p * y).sum(dim=(1, 2, 3))
        soft_dice = (2 * inter + 1.0) / (p.sum(dim=(1, 2, 3)) + y.sum(dim=(1, 2, 3)) + 1.0)
        return bce + (1.0 - soft_dice).mean()

    def collect(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        pred = (outputs.detach().float() > 0).cpu().numpy()[:, 0]
        true = (batch["y"].detach() > 0.5).cpu().numpy()[:, 0]
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "pred_bits": _pack(pred),
            "true_bits": _pack(true),
            "has": batch["has_target"].detach().cpu().numpy(),
        }

    def outlines(self, collected: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, None]:
        s = self.cfg.size
        return _unpack(collected["pred_bits"], s), _unpack(collected["true_bits"], s), None
