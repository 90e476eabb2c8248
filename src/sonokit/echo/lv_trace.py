"""`lv-trace`: the expert's LV tracing itself (long axis and 20 chords, 84 normalised coordinates in canonical
order) regressed on single frames, by a landmark network (soft-argmax U-Net, `unet-points`, by default) or an
image backbone with a regression head (e.g. MobileNetV2); its Simpson volumes give the EF (see lv_base)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from sonokit.core.registry import register_task
from sonokit.echo.lv_base import LV_DEFAULTS, LVOptions, LVTask
from sonokit.echo.tracing import canonical_tracing

POINTS = 42  # the 21 lines' two ends


class LVTraceOptions(LVOptions):
    volume_loss: float = Field(
        1.0,
        ge=0.0,
        description="weight of |V_pred / V_true - 1| (Simpson's volume of the predicted and the expert "
        "tracing, in torch) added to the coordinate loss; 0 turns it off",
    )
    volume_warmup: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="fraction of the epochs trained on the coordinates alone before the volume loss ramps in "
        "(linearly, over a tenth of the epochs): from the start it stalls the coordinate regression",
    )
    heatmap_loss: float = Field(
        1.0,
        ge=0.0,
        description="landmark models (unet-points): weight of the cross-entropy between each point's softmax "
        "map and a Gaussian (heatmap_sigma pixels) at the true point; 0 trains on coordinates alone. 1.0 "
        "(the default): dense supervision that localises each chord end, as lv-seg's masks do",
    )
    heatmap_sigma: float = Field(2.0, gt=0.0, description="pixels of the model input")


@register_task
class LVTraceTask(LVTask):
    name = "lv-trace"
    kind = "keypoints"
    monitor = ("mae", "min")  # val EF MAE: a small point error can hide ED and ES outlines drawn alike
    headline = ("mae", "rmse", "r2", "point_error")
    target = "lines"
    Options = LVTraceOptions
    opts: LVTraceOptions
    intended_use = (
        "Research: trace the LV (long axis and 20 chords, EchoNet layout) on apical four-chamber echo frames; "
        "Simpson volumes, ED/ES and EF per beat. Trained on the data set named in this card; not for clinical use."
    )
    # unet-points with the heatmap loss: test EF MAE 0.86 on synth200 in 20 epochs, vs 6.46 for MobileNetV2
    # regressing coordinates in 40 (README); `head` applies only when an image backbone is chosen
    defaults = {
        **LV_DEFAULTS,
        "model": "unet-points",
        "head": "avg",
        "epochs": 20,
        "patience": 0,
        "options": {
            **LV_DEFAULTS["options"],
            "area_plots": 4,
            "volume_loss": 1.0,
            "volume_warmup": 0.2,
            "heatmap_loss": 1.0,
            "heatmap_sigma": 2.0,
        },
    }

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.mean_tracing: list[float] | None = None

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Also the mean canonical tracing of the training frames: the output layer starts from it."""
        index = super().prepare_index(df)
        if self.mean_tracing is None and self.echonet is not None:
            stack = []
            for name in index.loc[index["split"] == "train", "name"]:
                cine_size = self._video_size(str(name))
                for _, lines in self._traced(str(name)).values():
                    stack.append(canonical_tracing(lines) / cine_size)
            if stack:
                self.mean_tracing = np.mean(stack, axis=0).reshape(-1).round(6).tolist()
        return index

    def _video_size(self, name: str) -> float:
        fl = self.echonet.filelist
        row = fl[fl["FileName"] == self.echonet.video_path(name).name]
        if len(row) and "FrameWidth" in fl.columns and pd.notna(row["FrameWidth"].iloc[0]):
            return float(row["FrameWidth"].iloc[0])
        return float(self.cfg.size)

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        """A landmark network as registered, or an image backbone with a head of 84 outputs that starts at the
        mean tracing (small weights, the mean as bias) unless weights are loaded."""
        from sonokit.models import get_entry

        if get_entry(self.cfg.model).kind == "landmarks":
            return self.build_network("landmarks", load_init_weights, points=POINTS)
        model = self.build_network(
            "image",
            load_init_weights,
            num_classes=2 * POINTS,
            head=self.cfg.head,
            dropout=self.cfg.dropout,
            img_size=self.cfg.size,
        )
        if load_init_weights and not self.cfg.weights and self.mean_tracing is not None:
            last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            with torch.no_grad():
                last.bias.copy_(torch.tensor(self.mean_tracing, dtype=last.bias.dtype))
                last.weight.mul_(0.1)
        return model

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        """Coordinates (B, 84); a landmark model in training also gives its maps, for the heatmap loss."""
        net = getattr(model, "module", model)
        if model.training and getattr(net, "points", None) and self.opts.heatmap_loss > 0:
            return model(self.inputs(batch), maps=True)
        return super().forward(model, batch)

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Smooth L1 on the 84 normalised coordinates, plus (`volume_loss`) the relative error of the Simpson
        volume of the predicted tracing, |V_pred / V_true - 1| (bounded gradients, also for a collapsed outline):
        the coordinate loss alone lets ED and ES shapes drift towards the mean shape, which a small point error
        hides but the EF (a volume ratio) does not."""
        from sonokit.echo.tracing import simpson_volume_torch

        outputs, log_prob = outputs if isinstance(outputs, tuple) else (outputs, None)
        h = batch["has_target"].bool()
        pred, true = outputs[h].float(), batch["y"][h].float()
        loss = nn.functional.smooth_l1_loss(pred, true, beta=0.02)
        if log_prob is not None and len(pred):
            loss = loss + self.opts.heatmap_loss * _gaussian_ce(log_prob[h], true, self.opts.heatmap_sigma)
        weight = self.opts.volume_loss * self._volume_ramp()
        if weight > 0 and len(pred):
            v_pred = simpson_volume_torch(pred.reshape(-1, 21, 4))
            v_true = simpson_volume_torch(true.reshape(-1, 21, 4)).clamp_min(1e-6)
            loss = loss + weight * (v_pred / v_true - 1.0).abs().mean()
        return loss

    def _volume_ramp(self) -> float:
        """0 during the first `volume_warmup` of the epochs, then up to 1 over a tenth of them (1 before a
        training dataset exists)."""
        ds = getattr(self, "train_dataset", None)
        if ds is None or self.opts.volume_warmup <= 0:
            return 1.0
        epochs = max(int(self.cfg.epochs), 1)
        start, ramp = self.opts.volume_warmup * epochs, max(0.1 * epochs, 1.0)
        return float(np.clip((ds.epoch + 1 - start) / ramp, 0.0, 1.0))

    def collect(self, outputs: Any, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        outputs = outputs[0] if isinstance(outputs, tuple) else outputs
        return {
            "index": batch["index"].detach().cpu().numpy(),
            "pred_lines": outputs.detach().float().cpu().numpy(),
            "true_lines": batch["y"].detach().float().cpu().numpy(),
            "has": batch["has_target"].detach().cpu().numpy(),
        }

    def outlines(self, collected: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from sonokit.clinical import rasterize_tracing

        s = self.cfg.size
        pred = collected["pred_lines"].reshape(-1, 21, 4) * s
        true = collected["true_lines"].reshape(-1, 21, 4) * s
        has = collected["has"].astype(bool)
        pred_masks = (
            np.stack([rasterize_tracing(p, (s, s)) for p in pred]) if len(pred) else np.zeros((0, s, s), bool)
        )
        true_masks = (
            np.stack(
                [
                    rasterize_tracing(t, (s, s)) if h else np.zeros((s, s), bool)
                    for t, h in zip(true, has, strict=True)
                ]
            )
            if len(true)
            else pred_masks
        )
        return pred_masks, true_masks, pred

    def state(self) -> dict[str, Any]:
        return {"classes": None, "mean_tracing": self.mean_tracing}

    def load_state(self, card: dict[str, Any]) -> None:
        self.mean_tracing = card.get("mean_tracing")


def _gaussian_ce(log_prob: torch.Tensor, points: torch.Tensor, sigma: float) -> torch.Tensor:
    """Cross-entropy of (B, K, H, W) log-probability maps against normalised Gaussians at the (B, 2K) points
    (x, y in units of the side), averaged over maps."""
    b, k, h, w = log_prob.shape
    pts = points.reshape(b, k, 2)
    xs = torch.arange(w, device=log_prob.device, dtype=log_prob.dtype)
    ys = torch.arange(h, device=log_prob.device, dtype=log_prob.dtype)
    gx = torch.exp(-((xs - pts[..., :1] * w) ** 2) / (2 * sigma**2))  # (B, K, W)
    gy = torch.exp(-((ys - pts[..., 1:] * h) ** 2) / (2 * sigma**2))  # (B, K, H)
    g = gy[..., :, None] * gx[..., None, :]
    g = g / g.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return -(g * log_prob).sum(dim=(-2, -1)).mean()
