"""Grad-CAM heatmaps through the `grad-cam` package (pytorch_grad_cam).

The target layer is `model.gradcam_layer` (sonokit models expose their final conv feature map there); for other
modules the last Conv2d is used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def find_gradcam_layer(model: nn.Module) -> nn.Module:
    """`model.gradcam_layer` when present, else the last registered Conv2d."""
    layer = getattr(model, "gradcam_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer and no gradcam_layer to explain")
    return convs[-1]


def gradcam(
    model: nn.Module, x: torch.Tensor, target: int | None = None, layer: nn.Module | None = None
) -> np.ndarray:
    """Grad-CAM of `target` (default: the top-scoring class) for one input (1, C, H, W) or (C, H, W).

    Returns an (H, W) float32 map in [0, 1] at the input's resolution (all zeros when the class gets no
    positive evidence). The model's train/eval mode is restored afterwards.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"gradcam explains one image at a time: expected (1, C, H, W), got {tuple(x.shape)}")
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(param.device, param.dtype)
    was_training = model.training
    targets = None if target is None else [ClassifierOutputTarget(int(target))]
    try:
        with GradCAM(model=model, target_layers=[layer or find_gradcam_layer(model)]) as cam:
            heat = cam(input_tensor=x, targets=targets)[0]
    finally:
        model.train(was_training)
    return np.clip(np.nan_to_num(heat.astype(np.float32)), 0.0, 1.0)
