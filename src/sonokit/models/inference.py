"""Rewrite a trained network for prediction only: the same outputs to float rounding, less work per input.

Two exact rewrites, for models that will not be trained or saved again (`sonokit ef predict` applies them):
    fold_batchnorm   a BatchNorm right after a convolution in eval mode is an affine map per channel, so it folds
                     into the convolution's weights and bias and its own pass over the activations disappears;
    GrayInputConv    a grey cine copied into three identical channels, normalised with one mean and std, gives a
                     first convolution equal to a one-channel convolution with the kernels summed over channels:
                     a grey clip is built, normalised and convolved once instead of three times (colour clips
                     still take the original convolution).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution inside an nn.Sequential; returns how
    many were folded. The model must be in eval mode (training would need the batch statistics)."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = seq._modules[first], seq._modules[second]
            if (
                isinstance(conv, _CONVS)
                and isinstance(norm, _NORMS)
                and norm.track_running_stats
                and norm.running_mean is not None
                and conv.out_channels == norm.num_features
            ):
                fused = fuse_conv_bn_eval(conv, norm)
                fused.weight.data = fused.weight.data.contiguous(memory_format=_memory_format(conv.weight))
                seq._modules[first], seq._modules[second] = fused, nn.Identity()
                folded += 1
    return folded


class GrayInputConv(nn.Module):
    """A first convolution that also takes one-channel input: the grey image copied into every channel."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        if not isinstance(conv, _CONVS) or conv.groups != 1:
            raise ValueError(f"not a plain convolution: {conv}")
        gray = type(conv)(
            1,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            gray.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None:
                gray.bias.copy_(conv.bias)
        gray.weight.data = gray.weight.data.contiguous(memory_format=_memory_format(conv.weight))
        self.conv, self.gray = conv, gray.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            return self.conv(x)
        if x.is_contiguous() and _memory_format(self.conv.weight) is not torch.contiguous_format:
            # One channel is both layouts, but PyTorch reads it as the default one and oneDNN then writes this
            # convolution's output in it, to be copied to channels-last by the next convolution: the same memory
            # with the channels-last strides makes the output channels-last at once.
            x = x.as_strided(x.shape, (x.stride(0), 1, *x.stride()[2:]), x.storage_offset())
        return self.gray(x)


def _memory_format(weight: torch.Tensor) -> torch.memory_format:
    """Keep a channels-last weight channels-last after it is rebuilt."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(weight.ndim)
    if fmt is not None and weight.is_contiguous(memory_format=fmt) and not weight.is_contiguous():
        return fmt
    return torch.contiguous_format
