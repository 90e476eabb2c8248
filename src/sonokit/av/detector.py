"""The valve detector: a CenterNet-style head on any registered backbone, built without downloaded weights.

Why this shape: one valve per frame, CPU training in minutes and plain ONNX export. The backbone's last feature
map (stride 8 for tinycnn, 32 for MobileNetV3) gets a 3x3 conv + ReLU + 1x1 conv to five maps per cell:
    0: objectness logit (a Gaussian peak at the cell holding the box centre, CenterNet's focal loss),
    1-2: centre offset inside that cell (sigmoid, in cells), 3-4: log box width and height (in cells).
The forward pass returns only that (B, 5, h, w) tensor (static shapes: exports to ONNX as is); `decode` turns it
into boxes: 3x3 max-pool peaks, top-k, NMS. A frame with no valve has an all-zero target, so its best peak
scores low and the cascade reports "no valve found".
Licences: torch/torchvision (BSD) and timm (Apache-2.0) only; no ultralytics (AGPL).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sonokit.errors import ModelError

HEAT_PRIOR = 0.1  # initial objectness probability: keeps the focal loss of the first steps small
MAX_LOG_SIZE = 8.0  # exp(8) cells: a bound that keeps exp() finite on untrained weights


class AVDetector(nn.Module):
    """Backbone (from sonokit.models.create) + centre-heatmap head."""

    def __init__(
        self,
        backbone: str = "tinycnn",
        in_chans: int = 1,
        img_size: int = 128,
        head_width: int = 64,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        from sonokit.models import create

        base = create(
            backbone, num_classes=1, in_chans=in_chans, head="linear", img_size=img_size, weights=weights
        )
        self.backbone = base.backbone
        channels = int(base.spec["backbone_dim"])
        h, w = self._probe(in_chans, img_size)
        self.head = nn.Sequential(
            nn.Conv2d(channels, head_width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_width, 5, 1),
        )
        nn.init.constant_(self.head[-1].bias, 0.0)
        with torch.no_grad():
            self.head[-1].bias[0] = -math.log((1 - HEAT_PRIOR) / HEAT_PRIOR)
        self.stride = (img_size / h, img_size / w)  # (y, x) input pixels per feature cell
        self.spec: dict[str, Any] = {
            "name": f"av-detector/{backbone}",
            "backbone": backbone,
            "family": base.spec.get("family"),
            "head": "centernet",
            "head_width": head_width,
            "in_chans": in_chans,
            "img_size": img_size,
            "feature_map": [h, w],
            "outputs": "objectness logit, centre offset x/y (sigmoid, cells), log width/height (cells)",
        }

    def _probe(self, in_chans: int, img_size: int) -> tuple[int, int]:
        was = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                out = self.backbone.forward_features(torch.zeros(1, in_chans, img_size, img_size))
        except RuntimeError as err:
            raise ModelError(f"input size {img_size} is too small for this backbone ({err})") from err
        finally:
            self.backbone.train(was)
        return int(out.shape[2]), int(out.shape[3])

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.head[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x))


# ---------------------------------------------------------------------------------------------- targets and loss


def encode_targets(
    boxes: torch.Tensor, valid: torch.Tensor, shape: tuple[int, int], stride: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(heat (B, h, w), centre cells (N, 3) as (batch, row, col), regression targets (N, 4), boxes (N, 4)).

    Boxes (B, M, 4) are in input pixels with `valid` (B, M) marking real ones. The heat target is 1 at each
    centre cell and a Gaussian around it (sigma a sixth of the box size in cells, at least 0.5 cell).
    """
    b, m = valid.shape
    h, w = shape
    sy, sx = stride
    device = boxes.device
    bx_all = boxes.float()
    cx, cy = (bx_all[..., 0] + bx_all[..., 2]) / 2 / sx, (bx_all[..., 1] + bx_all[..., 3]) / 2 / sy
    bw = ((bx_all[..., 2] - bx_all[..., 0]) / sx).clamp_min(1e-3)
    bh = ((bx_all[..., 3] - bx_all[..., 1]) / sy).clamp_min(1e-3)
    col = cx.floor().long().clamp(0, w - 1)
    row = cy.floor().long().clamp(0, h - 1)
    sigma = (torch.minimum(bw, bh) / 6).clamp_min(0.5)
    rows = torch.arange(h, device=device).view(1, 1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, 1, w)
    d2 = (rows - row[..., None, None]) ** 2 + (cols - col[..., None, None]) ** 2
    g = torch.exp(-d2 / (2 * sigma[..., None, None] ** 2)) * valid[..., None, None]
    heat = g.amax(dim=1) if m else torch.zeros(b, h, w, device=device)
    bi, mi = torch.nonzero(valid, as_tuple=True)
    reg = torch.stack([cx - col, cy - row, bw.log(), bh.log()], dim=-1)[bi, mi]
    cells = torch.stack([bi, row[bi, mi], col[bi, mi]], dim=1)
    bx = bx_all[bi, mi]
    return heat, cells, reg, bx


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of objects (at least 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp_min(1.0)


def cell_boxes(
    raw: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, stride: tuple[float, float]
) -> torch.Tensor:
    """Boxes (N, 4) in input pixels from raw regression outputs (N, 4) at the given cells."""
    sy, sx = stride
    cx = (cols.float() + torch.sigmoid(raw[:, 0])) * sx
    cy = (rows.float() + torch.sigmoid(raw[:, 1])) * sy
    bw = torch.exp(raw[:, 2].clamp(-MAX_LOG_SIZE, MAX_LOG_SIZE)) * sx
    bh = torch.exp(raw[:, 3].clamp(-MAX_LOG_SIZE, MAX_LOG_SIZE)) * sy
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)


def detection_loss(
    out: torch.Tensor,
    boxes: torch.Tensor,
    valid: torch.Tensor,
    stride: tuple[float, float],
    giou_weight: float = 1.0,
    l1_weight: float = 1.0,
) -> torch.Tensor:
    """focal(heat) + l1_weight * L1(offset, log size) + giou_weight * GIoU loss, at the objects' centre cells."""
    from torchvision.ops import generalized_box_iou_loss

    out = out.float()
    heat, cells, reg, bx = encode_targets(boxes, valid, (out.shape[2], out.shape[3]), stride)
    loss = focal_loss(out[:, 0], heat)
    if len(cells):
        raw = out[cells[:, 0], 1:, cells[:, 1], cells[:, 2]]  # (N, 4)
        pred = torch.cat([torch.sigmoid(raw[:, :2]), raw[:, 2:]], dim=1)
        loss = loss + l1_weight * F.l1_loss(pred, reg)
        decoded = cell_boxes(raw, cells[:, 1], cells[:, 2], stride)
        loss = loss + giou_weight * generalized_box_iou_loss(decoded, bx, reduction="mean")
    return loss


# ---------------------------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode(
    out: torch.Tensor, stride: tuple[float, float], max_detections: int = 5, nms_iou: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes (B, K, 4) in input pixels, scores (B, K)); unused slots have score -1 and a zero box."""
    from torchvision.ops import nms

    out = out.float()
    b, _, h, w = out.shape
    heat = torch.sigmoid(out[:, 0])
    peaks = heat * (F.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0] == heat)
    k = min(max_detections, h * w)
    scores, idx = peaks.view(b, -1).topk(k, dim=1)
    rows, cols = idx // w, idx % w
    boxes_out = torch.zeros(b, k, 4, device=out.device)
    scores_out = torch.full((b, k), -1.0, device=out.device)
    for i in range(b):
        raw = out[i, 1:, rows[i], cols[i]].T  # (k, 4)
        bx = cell_boxes(raw, rows[i], cols[i], stride)
        keep = nms(bx, scores[i], nms_iou)
        boxes_out[i, : len(keep)] = bx[keep]
        scores_out[i, : len(keep)] = scores[i, keep]
    return boxes_out, scores_out
