"""Grad-CAM heatmaps (pytorch_grad_cam) and overlays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sonokit.explain import find_gradcam_layer, gradcam, overlay_heatmap
from sonokit.models import create

SQ = 12  # side of the bright square the tiny model learns to detect


def _squares(gen: torch.Generator, n: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images; label 1 images carry a bright SQxSQ square at a random place."""
    x = torch.rand(n, 1, size, size, generator=gen) * 0.3
    y = torch.randint(0, 2, (n,), generator=gen)
    pos = torch.randint(0, size - SQ, (n, 2), generator=gen)
    for i in range(n):
        if y[i]:
            r, c = pos[i].tolist()
            x[i, 0, r : r + SQ, c : c + SQ] += 0.7
    return x, y, pos


@pytest.mark.parametrize("name", ["tinycnn", "resnet18", "mobilenetv3_small"])
def test_heatmap_shape_range_and_mode_restored(name: str) -> None:
    torch.manual_seed(0)
    model = create(name, num_classes=3, in_chans=1).train()
    x = torch.rand(1, 1, 64, 48)
    heat = gradcam(model, x, target=2)  # resized from the (8x6 or 2x2) feature map to the input size
    assert heat.shape == (64, 48) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    assert model.training  # GradCAM switches to eval; we switch back
    assert gradcam(model, x[0]).shape == (64, 48)  # (C, H, W) and the default (top-1) target
    with pytest.raises(ValueError, match="one image at a time"):
        gradcam(model, torch.rand(2, 1, 64, 48))


@pytest.mark.slow
def test_heatmap_peaks_on_the_learned_bright_square() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = create("tinycnn", num_classes=2, in_chans=1, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        x, y, _ = _squares(gen, 32)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3
    model.eval()
    x, y, pos = _squares(torch.Generator().manual_seed(5), 24)
    hits, ratios = 0, []
    positives = [i for i in range(len(y)) if y[i] == 1]
    for i in positives:
        heat = gradcam(model, x[i : i + 1], target=1)
        r, c = pos[i].tolist()
        pr, pc = np.unravel_index(int(heat.argmax()), heat.shape)
        hits += (r - 2 <= pr < r + SQ + 2) and (c - 2 <= pc < c + SQ + 2)
        inside = heat[r : r + SQ, c : c + SQ]
        outside_mean = (heat.sum() - inside.sum()) / (heat.size - inside.size)
        ratios.append(inside.mean() / max(outside_mean, 1e-6))
    assert len(positives) >= 8
    assert hits >= 0.9 * len(positives), (hits, len(positives))
    assert float(np.median(ratios)) > 3.0, ratios


def test_overlay_blends_colour_map_onto_gray_and_rgb() -> None:
    gray = np.full((40, 30), 100, dtype=np.uint8)
    heat = np.zeros((10, 10), dtype=np.float32)
    heat[:5] = 1.0  # top half hot; resized to the image size
    out = overlay_heatmap(gray, heat, alpha=0.4)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    # JET maps 1.0 to red and 0.0 to blue (RGB order)
    assert out[2, 15, 0] > out[2, 15, 2] and out[-2, 15, 2] > out[-2, 15, 0]
    np.testing.assert_array_equal(overlay_heatmap(gray, heat, alpha=0.0), np.dstack([gray] * 3))
    full = overlay_heatmap(gray, heat, alpha=1.0)
    jet_red = cv2.cvtColor(
        cv2.applyColorMap(np.full((1, 1), 255, np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    np.testing.assert_array_equal(full[0, 0], jet_red[0, 0])
    rgb_float = np.random.default_rng(0).random((40, 30, 3)).astype(np.float32)
    assert overlay_heatmap(rgb_float, heat).shape == (40, 30, 3)
    with pytest.raises(ValueError, match="image must be"):
        overlay_heatmap(np.zeros((4, 4, 2), np.uint8), heat)
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(gray, heat, alpha=1.5)


def test_gradcam_layer_fallback_is_last_conv() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    assert find_gradcam_layer(net) is net[2]
    model = create("tinycnn")
    assert find_gradcam_layer(model) is model.gradcam_layer
    assert gradcam(net, torch.rand(1, 1, 20, 20), target=0).shape == (20, 20)
