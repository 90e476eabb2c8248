"""The prediction-only rewrites of a trained network keep its outputs (sonokit.models.inference)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sonokit.echo.video_models import create_video_model
from sonokit.models.inference import GrayInputConv, fold_batchnorm
from sonokit.train.engine import channels_last_model


def _trained_like(name: str) -> nn.Module:
    """A video model whose BatchNorms hold statistics and affine terms far from the identity."""
    torch.manual_seed(0)
    net = create_video_model(name)
    for layer in net.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.normal_(0.0, 0.5)
            layer.running_var.uniform_(0.2, 3.0)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.normal_(0.0, 0.3)
    return net.eval()


@pytest.mark.parametrize(
    "name, shape", [("two-stream-tiny", (3, 3, 8, 48, 48)), ("r2plus1d_18", (2, 3, 4, 32, 32))]
)
def test_folded_and_grey_fed_models_give_the_original_outputs(name, shape) -> None:
    net = _trained_like(name)
    gray = torch.rand(shape[0], 1, *shape[2:])
    colour = torch.rand(shape)
    with torch.inference_mode():
        before_gray, before_colour = net(gray.expand(shape)), net(colour)
    n_norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())

    assert fold_batchnorm(net) > 0
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert left < n_norms
    net.accept_gray_input()
    channels_last_model(net)
    assert any(isinstance(m, GrayInputConv) for m in net.modules())
    with torch.inference_mode():
        after_gray = net(gray.contiguous(memory_format=torch.channels_last_3d))  # one channel in
        after_colour = net(colour)  # three different channels still take the original convolution
    scale = before_colour.abs().max().item()
    assert torch.allclose(after_gray, before_gray, atol=1e-4 * scale, rtol=0)
    assert torch.allclose(after_colour, before_colour, atol=1e-4 * scale, rtol=0)
    assert before_colour.std() > 0  # outputs that differ between clips: the comparison means something


def test_folding_refuses_a_training_model() -> None:
    net = create_video_model("two-stream-tiny").train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net)
